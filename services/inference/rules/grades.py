"""CTCAE grade statements: "grade 2", "G3", "CTCAE Gr 2", "grade II", "(grade 4 skin toxicity)".

Only an explicit statement yields a grade: "grade 2", "Grade II", "gr. 2", "Gr2", "G2", "G 2",
"CTCAE grade 2", "grade two". A range ("grade 2-3", "grade 2 to 3", "grade 2/3") takes the higher
grade (the one that decides management). Thresholds ("resume once <= G1") and tumour grades
(Gleason, histologic) are not toxicity grades. A grade said to be current ("now G1") beats one
said to be earlier ("initially G3") for the same mention.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_NUMBER = {"1": 1, "2": 2, "3": 3, "4": 4, "5": 5, "i": 1, "ii": 2, "iii": 3, "iv": 4, "v": 5,
           "one": 1, "two": 2, "three": 3, "four": 4, "five": 5}

_N = r"(?:[1-5]|iv|v|i{1,3}|one|two|three|four|five)"
GRADE_PATTERN = re.compile(
    rf"(?<![\w-])(?:(?:ctcae|ctc)\s*(?:v(?:ersion)?\s*\d(?:\.\d+)?\s*)?)?(?:grade|gr\.?|gd)\s*[:#=]?\s*"
    rf"(?P<word>{_N})\b(?:\s*(?:-|–|/|to|or)\s*(?P<high>{_N})\b)?(?!\.\d)"
    r"|(?<![\w/-])(?:g|(?-i:G)[ \t])(?P<short>[1-5])\b(?!\s*p\d)(?:\s*(?:-|–|/)\s*g?(?P<shigh>[1-5])\b)?",
    re.IGNORECASE,
)
#: Words right before "grade" that make it something other than a CTCAE grade.
_NOT_TOXICITY = re.compile(r"(?:gleason|tumou?r|histologic(?:al)?|nuclear|fnclcc|who|low|high|intermediate|isup|fuhrman)[\s-]*$",
                           re.IGNORECASE)
#: A threshold in a rule, not a statement ("resume once colitis <= G1", "hold for grade >= 3").
_THRESHOLD = re.compile(r"(?:<=?|>=?|≤|≥|=<|=>|less\s+than|at\s+least|or\s+(?:less|lower|higher))\s*$", re.IGNORECASE)
_THRESHOLD_AFTER = re.compile(r"^\s*(?:or\s+(?:less|lower|higher|worse|better|above|below)|\+|or\s+greater)", re.IGNORECASE)
#: The grade is the current one ("now G1", "improved to grade 1") or a past one ("initially G3").
_CURRENT = re.compile(r"\b(?:now|currently|current|today|improved\s+to|down\s+to|downgraded\s+to|at\s+present|presently)\b\W*(?:\w+\W+)?$",
                      re.IGNORECASE)
_EARLIER = re.compile(r"\b(?:initially|initial|peak|peaked\s+at|max(?:imum)?|worst|at\s+onset|originally|previously|was|prior)\b\W*(?:\w+\W+)?$",
                      re.IGNORECASE)


@dataclass(frozen=True)
class GradeMention:
    grade: int
    start: int
    end: int
    #: "current" ("now G1"), "earlier" ("initially grade 3") or "" (not said).
    when: str = ""


def find_grades(text: str, offset: int = 0) -> list[GradeMention]:
    """Grade statements in ``text``; offsets are shifted by ``offset``. A range ("grade 2-3",
    "G2/3", "grade 1 to 2") is read as its higher grade; thresholds ("<= G1") are not grades."""
    found: list[GradeMention] = []
    for match in GRADE_PATTERN.finditer(text):
        before = text[max(0, match.start() - 30):match.start()]
        if _NOT_TOXICITY.search(before[-20:]) or _THRESHOLD.search(before) or _THRESHOLD_AFTER.match(text, match.end()):
            continue
        low = (match.group("word") or match.group("short")).lower()
        high = match.group("high") or match.group("shigh")
        grade = max(_NUMBER[low], _NUMBER[high.lower()]) if high else _NUMBER[low]
        when = "current" if _CURRENT.search(before) else "earlier" if _EARLIER.search(before) else ""
        found.append(GradeMention(grade, offset + match.start(), offset + match.end(), when))
    return found
