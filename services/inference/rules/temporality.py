"""Time and subject of a mention beyond ConText's token window.

- **Resolved** (absent): the mention's sentence, or the rest of the problem item it heads, says
  the condition resolved ("resolved 10/2021", "LFTs normalized, fully resolved", "never required
  levothyroxine") and nothing later in that span says it is current again ("now grade 1",
  "recurred", "persists"). "Resolving", "not yet resolved", "improving" are not resolution.
- **Family subject** (absent): the mention's clause is about a relative ("his sister was just
  diagnosed with ...") and no reference to the patient stands between the relative and the mention.
"""
from __future__ import annotations

import re

from services.inference.rules.layout import Layout

RESOLVED = re.compile(
    r"(?<!not\s)(?<!not\syet\s)(?<!not\sfully\s)(?<!incompletely\s)(?<!un)(?<!never\s)"
    r"\b(?:resolved|recovered|back\s+to\s+(?:baseline|normal)|returned\s+to\s+baseline"
    r"|no\s+longer\s+(?:requires?|needs?|on|present|has|having)|off\s+(?:all\s+)?(?:replacement|levothyroxine|hydrocortisone|insulin)"
    r"|never\s+(?:became|required|needed)|transient(?:ly)?|self-limited|healed)\b",
    re.IGNORECASE)
#: After a resolution, a statement that the condition is current again.
CURRENT_AGAIN = re.compile(
    r"(?<!without\s)(?<!no\s)(?<!no\sfurther\s)\b(?:now\s+(?:grade|g\d|gr|with|has|again|on|worse|recurrent)"
    r"|recurr(?:ed|ent|ence)|relapsed?|flared?|again|persists?|persistent|ongoing|remains|still|currently"
    r"|re-?emerged|returned\s+(?!to\s+baseline))",
    re.IGNORECASE)
#: Words that make a resolution a condition or a plan, not a fact ("resume once resolved").
_PROSPECTIVE = re.compile(r"\b(?:after|once|until|if|when|before|upon|await\w*|expect\w*|to\s+be|until|unless|goal)\b[^.;\n]*$",
                          re.IGNORECASE)
#: Anywhere around a resolution: the condition is still being treated or is getting better.
STILL_TREATED = re.compile(
    r"\b(?:not\s+yet\s+resolved|not\s+fully\s+resolved|incompletely\s+resolved|resolving|improving|continues\s+to\s+improve"
    r"|on\s+(?:\w+\s+){0,2}taper|tapering|taper\s+(?:to\s+)?continue)\b", re.IGNORECASE)
#: Replacement therapy still taken: an endocrine irAE on it is current even when "resolved" is
#: said of an episode (rule: ongoing on replacement therapy).
ON_REPLACEMENT = re.compile(
    r"\b(?:on|continues?|continuing|remains\s+on|still\s+on|requires?|requiring|maintained\s+on)\s+"
    r"(?:\w+\s+){0,2}(?:levothyroxine|synthroid|hydrocortisone|prednisone\s+replacement|fludrocortisone|insulin|replacement)\b",
    re.IGNORECASE)

_RELATIVE = re.compile(
    r"\b(?:mother|father|sister|brother|aunt|uncle|grandmother|grandfather|cousin|son|daughter|sibling|parent"
    r"|mom|dad|niece|nephew|husband|wife|spouse|partner|friend|neighbou?r)(?:'s)?\b", re.IGNORECASE)
_PATIENT = re.compile(r"\b(?:patient|pt|i|me|my|his\s+own|her\s+own|himself|herself)\b|;", re.IGNORECASE)


def resolved_in(text: str, start: int, end: int, sentence_end: int, layout: Layout, limit: int | None = None) -> bool:
    """The mention at [start, end) is stated as resolved after it, in its sentence or in the item
    it heads, before ``limit`` (where another category is mentioned)."""
    item_start, item_end = layout.item(start)
    first_line_end = text.find("\n", item_start, item_end)
    heads_item = first_line_end < 0 or start < first_line_end
    stop = max(sentence_end, item_end) if heads_item else sentence_end
    if limit is not None:
        stop = min(stop, limit)
    window = text[end:stop]
    found = next((m for m in RESOLVED.finditer(window) if not _PROSPECTIVE.search(window, max(0, m.start() - 30), m.start())),
                 None)
    if not found:
        return False
    later = re.split(r"[.)\n]", window[found.end():], maxsplit=1)[0]
    return not (CURRENT_AGAIN.search(later) or ON_REPLACEMENT.search(window) or STILL_TREATED.search(window))


def family_subject(text: str, sentence_start: int, start: int) -> bool:
    """A relative is the subject of the clause that holds the mention."""
    before = text[sentence_start:start]
    relative = None
    for relative in _RELATIVE.finditer(before):
        pass
    if relative is None:
        return False
    return not _PATIENT.search(before, relative.end())


#: Words in a mention's item saying the condition was there before the checkpoint inhibitor.
PREDATES = re.compile(
    r"(?<!no\s)(?<!not\s)(?<!without\s)(?<!non-)\b(?:pre-?dat(?:es|ed|ing)|prior\s+to\s+(?:starting\s+|any\s+|all\s+)?(?:immunotherapy|checkpoint|ici|cancer|pembro|nivo|ipi|atezo|durva)"
    r"|before\s+(?:starting\s+|any\s+|all\s+)?(?:immunotherapy|checkpoint|ici|cancer|pembro|nivo|ipi|atezo|durva|the\s+cancer)"
    r"|since\s+(?:childhood|adolescence|age\s+\d{1,2}|her\s+teens|his\s+teens)|long-?standing|lifelong\s+history|childhood[- ]onset"
    r"|pre-?existing|years\s+before)", re.IGNORECASE)
_YEAR = re.compile(r"(?<![\d/.-])(?:\d{1,2}/)?((?:19|20)\d{2})(?![\d/])")
_DIAGNOSED = re.compile(r"\b(?:dx|dx'?d|diagnosed|since|onset|in)\s*(?:\d{1,2}/)?$", re.IGNORECASE)


def first_year_near(text: str, starts: list[tuple[int, int]]) -> int | None:
    """The earliest year written within a line's reach of the given spans (checkpoint-inhibitor
    mentions: when treatment started)."""
    years = []
    for start, end in starts:
        line_start = text.rfind("\n", 0, start) + 1
        line_end = text.find("\n", end)
        line_end = len(text) if line_end < 0 else line_end
        window = text[max(line_start, start - 40):min(line_end, end + 60)]
        years.extend(int(m.group(1)) for m in _YEAR.finditer(window))
    return min(years) if years else None


def diagnosis_year(text: str, start: int, end: int, item_end: int) -> int | None:
    """A year the mention's own line gives for its diagnosis ("dx 2005", "since 2012", "(2019)")."""
    line_end = text.find("\n", end, item_end)
    line_end = item_end if line_end < 0 else line_end
    after = text[end:min(line_end, end + 50)]
    for match in _YEAR.finditer(after):
        if _DIAGNOSED.search(after[:match.start()]) or after[:match.start()].strip(" (,-") == "":
            return int(match.group(1))
    return None


def predates(text: str, start: int, end: int, layout: Layout, ici_year: int | None) -> bool:
    """The mention's item says the condition came before the checkpoint inhibitor."""
    item_start, item_end = layout.item(start)
    line_start = max(item_start, text.rfind("\n", 0, start) + 1)
    line_end = text.find("\n", end, item_end)
    line_end = item_end if line_end < 0 else line_end
    if PREDATES.search(text, line_start, line_end):
        return True
    year = diagnosis_year(text, start, end, item_end)
    return year is not None and ici_year is not None and year < ici_year
