"""The layout of a note: its items (problems, assessment entries, list bullets, paragraphs) and
the statements that govern a whole item or list rather than one sentence.

A clinical note states a problem once and qualifies it on the lines that follow ("3. Colitis --
grade 2" / "   - C. diff negative, likely from pembrolizumab" / "   - resolved on budesonide").
An **item** is the span such a statement governs:

- a numbered or hashed entry ("1.", "2)", "#") or a labelled line ("Colitis:", "GI:") with its
  indented lines and sub-bullets;
- a bullet of a plain list, or a paragraph line, on its own;
- every item ends at a blank line and at a section header.

**Lead lines** govern the list they introduce: a line that ends with ":" and reads as education
or instructions ("Counseling provided:", "Call us if you notice:") makes every line up to the next
blank line or header hypothetical; a line opening with a negative list label ("Neg:",
"Negative:", "Denies:", "Ruled out:") negates what follows on that line.

Everything here is a regular expression over the note text, computed once per note (offsets are
characters of the original text).
"""
from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

_NUMBERED = re.compile(r"[ \t]*(?:\d{1,2}[.)](?!\d)|#|\(\d{1,2}\)|problem\s*#?\d*\s*:)", re.IGNORECASE)
_LABELLED = re.compile(r"[ \t]*[A-Za-z][A-Za-z /&'()-]{0,40}:(?![/\d])")
_BULLET = re.compile(r"[ \t]*(?:[-*•·>o]|\u2022)[ \t]+")
_INDENTED = re.compile(r"[ \t]{2,}\S")

#: Words that make a lead line (ending with ":") introduce education or instructions.
EDUCATION_LEAD = re.compile(
    r"\b(?:counsel(?:l)?ing|counsel(?:l)?ed|educat(?:ion|ed)|instruct(?:ions|ed)|side\s+effects?|risks?"
    r"|warning\s+signs|signs\s+(?:and\s+symptoms\s+)?to\s+watch|watch\s+for|call\s+(?:us|the\s+clinic|triage|if|for)"
    r"|if\s+you\s+(?:notice|develop|have|get)|return\s+precautions|may\s+cause|can\s+cause|handout|consent)\b",
    re.IGNORECASE)
#: A sentence that teaches rather than reports ("we discussed the risks of ...", "X can cause ...").
EDUCATION_SENTENCE = re.compile(
    r"\b(?:(?:discussed|reviewed|went\s+over|explained|counsel(?:l)?ed|educated|taught)\b[^.;\n]{0,80}?"
    r"\b(?:risks?|side[- ]effects?|toxicit(?:y|ies)|adverse\s+events?|irAEs?|warning\s+signs|signs|symptoms)"
    r"|(?:may|can|could|might)\s+(?:cause|lead\s+to|result\s+in|inflame|affect)|this\s+can\s+be|can\s+sometimes"
    r"|side[- ]effects?\s+(?:include|such\s+as|of)|risks?\s+(?:include|of)|signs\s+to\s+watch|call\s+(?:us|the\s+clinic|triage|24/7)"
    r"|(?:call|return|go\s+to\s+(?:the\s+)?(?:ed|er))\s+(?:\w+\s+){0,4}(?:if|for)\s+(?:you\s+)?(?:develop|notice|have|any)"
    r"|(?:risks?|side[- ]effects?|adverse\s+events?|irAEs?|toxicit(?:y|ies))\s+(?:were\s+|was\s+)?(?:discussed|reviewed|explained)"
    r"|\b(?:were|was)\s+(?:also\s+)?(?:mentioned|discussed|explained)\b"
    r"|\b(?:usually|typically|generally|commonly|often)\s+(?:looks?|presents?|causes?|starts?|shows?|appears?|begins?)\b"
    r"|(?:most\s+)?common\s+(?:side\s+)?effects\s+(?:are|include)|wallet\s+card|written\s+info"
    # order-set and protocol text: conditions to act on, not findings ("Hold pembrolizumab and notify
    # provider for: Grade 2 pneumonitis; ...")
    r"|(?:notify|page|call|contact)\s+(?:the\s+)?(?:provider|prescriber|physician|md|doctor|oncologist|oncology|team)"
    r"\s+(?:for|if)\b|\bhold\s+(?:\w+\s+){1,2}(?:and\s+(?:\w+\s+){1,3})?(?:for|if)\s*:|\border\s+set\b|auto-?populated)",
    re.IGNORECASE)
#: A line that opens a negative list ("Neg: fever, rash", "Negative for: ...", "Ruled out / not present: ...").
NEGATIVE_LEAD = re.compile(
    r"[ \t]*(?:[-*•]\s*)?(?:(?:ros|review\s+of\s+systems|skin|gi|resp|cv|constitutional)\s*(?:\([^)\n]{0,30}\))?\s*:\s*)?"
    r"(?:neg(?:ative)?(?:\s+for)?|pertinent\s+negatives?|denies|denied|ruled\s+out(?:\s*/\s*not\s+present)?"
    r"|not\s+present|none\s+of)\b[^:\n]{0,40}?(?::|\s)", re.IGNORECASE)
#: Cues that flip a negative list back to positive before the mention ("Neg: fever; + diarrhea").
_POSITIVE_BREAK = re.compile(r"(?:^|[\s;,(])(?:\+|positive\s+for|pos\s+for|endorses|reports|but|except)(?=\s|\w)",
                             re.IGNORECASE)
#: Marks that end a negative list on its line.
_LIST_END = re.compile(r"(?<!\b[A-Za-z])\.(?=\s|$)|;")


@dataclass(frozen=True)
class Layout:
    """Items and lead lines of one note, queried by character offset."""
    item_starts: tuple[int, ...]
    item_ends: tuple[int, ...]
    #: whether each item is a problem (numbered, hashed or labelled, with its sub-lines)
    item_grouping: tuple[bool, ...]
    #: (start, end) spans made hypothetical by an education lead line.
    education: tuple[tuple[int, int], ...]
    #: (start, end) spans of negative lists.
    negative: tuple[tuple[int, int], ...]

    def item(self, offset: int) -> tuple[int, int]:
        """The (start, end) of the item holding ``offset``."""
        i = bisect.bisect_right(self.item_starts, offset) - 1
        if i < 0:
            return 0, self.item_ends[0] if self.item_ends else offset
        return self.item_starts[i], self.item_ends[i]

    def item_index(self, offset: int) -> int:
        return max(0, bisect.bisect_right(self.item_starts, offset) - 1)

    def is_problem(self, offset: int) -> bool:
        """The item holding ``offset`` is a problem entry (numbered, hashed or labelled)."""
        return bool(self.item_grouping) and self.item_grouping[self.item_index(offset)]

    def in_education(self, offset: int) -> bool:
        return any(start <= offset < end for start, end in self.education)

    def in_negative_list(self, offset: int) -> bool:
        return any(start <= offset < end for start, end in self.negative)


def _lines(text: str) -> list[tuple[int, int]]:
    spans, start = [], 0
    for match in re.finditer(r"\n", text):
        spans.append((start, match.start()))
        start = match.end()
    spans.append((start, len(text)))
    return spans


def build_layout(text: str, header: re.Pattern[str]) -> Layout:
    """Split ``text`` into items; ``header`` matches a section header at a line start."""
    starts: list[int] = []
    ends: list[int] = []
    grouping_flags: list[bool] = []
    education: list[tuple[int, int]] = []
    negative: list[tuple[int, int]] = []
    open_kind = ""          # "" (no item), "grouping" (numbered / labelled: takes sub-lines), "single"
    lead_education: int | None = None
    for line_start, line_end in _lines(text):
        line = text[line_start:line_end]
        blank = not line.strip()
        is_header = bool(header.match(line))
        if blank or is_header:
            if lead_education is not None:
                education.append((lead_education, line_start))
                lead_education = None
            if starts and ends[-1] < 0:
                ends[-1] = line_start
            open_kind = ""
            if blank:
                continue
        _negative_span(text, line_start, line_end, negative)
        if lead_education is None and ((line.rstrip().endswith(":") and EDUCATION_LEAD.search(line))
                                       or (":" in line and EDUCATION_SENTENCE.search(line))):
            lead_education = line_start
        continues = open_kind == "grouping" and (_BULLET.match(line) or _INDENTED.match(line)
                                                 or line[:1].islower()) and not _NUMBERED.match(line)
        if continues:
            continue
        if starts and ends[-1] < 0:
            ends[-1] = line_start
        starts.append(line_start)
        ends.append(-1)
        grouping = not is_header and (bool(_NUMBERED.match(line)) or (
            bool(_LABELLED.match(line)) and not _BULLET.match(line)))
        open_kind = "grouping" if grouping else "single"
        grouping_flags.append(grouping)
    if starts and ends[-1] < 0:
        ends[-1] = len(text)
    if lead_education is not None:
        education.append((lead_education, len(text)))
    return Layout(tuple(starts), tuple(ends), tuple(grouping_flags), tuple(education), tuple(negative))


def _negative_span(text: str, line_start: int, line_end: int, out: list[tuple[int, int]]) -> None:
    """The part of the line (and of the lines that wrap it: they start lower-case) governed by a
    negative list label at the line's start, if any."""
    lead = NEGATIVE_LEAD.match(text, line_start, line_end)
    if not lead:
        return
    end = line_end
    while end + 1 < len(text) and text[end] == "\n" and text[end + 1:end + 2].islower():
        following = text.find("\n", end + 1)
        end = len(text) if following < 0 else following
    stop = end
    for pattern in (_POSITIVE_BREAK, _LIST_END):
        found = pattern.search(text, lead.end(), end)
        if found:
            stop = min(stop, found.start())
    out.append((lead.start(), stop))


def education_sentence(sentence: str) -> bool:
    """The sentence teaches about possible side effects rather than reporting one."""
    return bool(EDUCATION_SENTENCE.search(sentence))


#: A negation that opens a list ("no evidence of colitis, hepatitis, pneumonitis or nephritis").
_LIST_NEGATION = re.compile(
    r"\b(?:no|denies|denied|without|negative\s+for|neg\s+for|no\s+evidence\s+of|no\s+signs?\s+of|free\s+of|absence\s+of"
    r"|ruled\s+out|not\s+consistent\s+with|no\s+history\s+of|never\s+had)\b", re.IGNORECASE)
#: Words that end a negated list: the clause goes on to report something.
_LIST_BREAK = re.compile(
    r"[;:.]|\+|\b(?:but|however|though|although|except|reports?|reported|endorses?|complains?|has|have|had|now|new|newly"
    r"|developed|noted|with|is|was|are|were|positive|presents?|presented|found|shows?|showed|since|after|due|likely"
    r"|from|on|grade|g\d|currently|still|persistent|ongoing|started|treated)\b", re.IGNORECASE)
MAX_LIST_ITEM_WORDS = 5


def negated_by_list(text: str, sentence_start: int, start: int) -> bool:
    """The mention is an item of a list opened by a negation in its sentence, however long the
    list: every item between the negation and the mention is a short phrase and nothing between
    them reports a positive finding."""
    cue = None
    for cue in _LIST_NEGATION.finditer(text, sentence_start, start):
        pass
    if cue is None:
        return False
    between = text[cue.end():start]
    if _LIST_BREAK.search(between):
        return False
    return all(len(chunk.split()) <= MAX_LIST_ITEM_WORDS for chunk in re.split(r",|\bor\b|\band\b|\bnor\b|/", between))
