"""CTCAE grade statements: "grade 2", "G3", "CTCAE Gr 2", "grade II", "(grade 4 skin toxicity)".

Only an explicit statement yields a grade; ranges ("grade 2-3") and tumour grades are ignored,
so an unstated or ambiguous grade stays ``None``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_NUMBER = {"1": 1, "2": 2, "3": 3, "4": 4, "5": 5, "i": 1, "ii": 2, "iii": 3, "iv": 4, "v": 5,
           "one": 1, "two": 2, "three": 3, "four": 4, "five": 5}

GRADE_PATTERN = re.compile(
    r"(?<![\w-])(?:(?:ctcae|ctc)\s*(?:v(?:ersion)?\s*\d(?:\.\d+)?\s*)?)?(?:grade|gr\.?|gd)\s*[:#=]?\s*"
    r"(?P<word>[1-5]|iv|v|i{1,3}|one|two|three|four|five)\b(?!\s*(?:-|–|/|to|or)\s*(?:[1-5]|i{1,3}|iv|v)\b)(?!\.\d)"
    r"|(?<![\w/-])g(?P<short>[1-5])\b(?!\s*p\d)(?!\s*(?:-|–|/)\s*[1-5]\b)",
    re.IGNORECASE,
)
#: Words right before "grade" that make it something other than a CTCAE grade.
_NOT_TOXICITY = re.compile(r"(?:gleason|tumou?r|histologic(?:al)?|nuclear|fnclcc|who|low|high|intermediate|isup|fuhrman)[\s-]*$",
                           re.IGNORECASE)


@dataclass(frozen=True)
class GradeMention:
    grade: int
    start: int
    end: int


def find_grades(text: str, offset: int = 0) -> list[GradeMention]:
    """Grade statements in ``text``; offsets are shifted by ``offset``."""
    found: list[GradeMention] = []
    for match in GRADE_PATTERN.finditer(text):
        if _NOT_TOXICITY.search(text[max(0, match.start() - 20):match.start()]):
            continue
        raw = (match.group("word") or match.group("short")).lower()
        found.append(GradeMention(_NUMBER[raw], offset + match.start(), offset + match.end()))
    return found
