"""The languages the agent understands and answers in: one module per language, each holding one
pattern table (``PATTERNS``: asking for a person, yes, no, hedges, thanks, status, cancel,
reschedule, logistics), one urgent-symptom lexicon (``URGENCY``, read by
``services.scheduling.urgency``) and one text table (``TEXTS``: every fixed reply), plus
its date words. ``detect`` tells which language a message is in: a declared one, ``OTHER`` (a
language the tenant did not declare) or ``""`` (too short to tell: keep the conversation's)."""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Callable

from services.scheduling import urgency
from services.scheduling.lang import en, es, foreign

OTHER = "other"


@dataclass(frozen=True)
class Language:
    code: str
    patterns: dict[str, re.Pattern]
    texts: dict[str, str]
    weekdays: tuple[str, ...]
    months: tuple[str, ...]
    markers: frozenset[str]
    when_format: str                                   # {weekday} {day} {month} {time}
    urgency: urgency.Lexicon
    to_english_dates: Callable[[str], str] = field(default=lambda text: text)


LANGUAGES: dict[str, Language] = {
    m.CODE: Language(m.CODE, m.PATTERNS, m.TEXTS, m.WEEKDAYS, m.MONTHS, m.MARKERS, m.WHEN_FORMAT,
                     urgency.compile_lexicon(m.CODE, m.URGENCY, m.MARKERS), m.to_english_dates)
    for m in (en, es)}
DEFAULT = "en"
#: Letters of scripts no declared language uses (a message in them is in an undeclared language).
_FOREIGN_SCRIPT = re.compile(r"[\u0370-\u03ff\u0400-\u04ff\u0590-\u05ff\u0600-\u06ff\u0900-\u097f\u0e00-\u0e7f"
                             r"\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)


def fold(text: str) -> str:
    """Lower case without accents ("Sí" -> "si"), for matching words."""
    decomposed = unicodedata.normalize("NFKD", text.lower().replace("’", "'"))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def declared(setting) -> tuple[str, ...]:
    """The tenant's languages (``settings.scheduling_languages``: "en,es" or a list; default both)."""
    if not setting:
        return tuple(LANGUAGES)
    codes = [c.strip().lower() for c in (setting.split(",") if isinstance(setting, str) else setting)]
    unknown = [c for c in codes if c not in LANGUAGES]
    if unknown:
        raise ValueError(f"scheduling_languages: no language module for {unknown}")
    return tuple(codes)


def get(code: str) -> Language:
    return LANGUAGES.get(code) or LANGUAGES[DEFAULT]


def foreign_yes(text: str) -> bool:
    """A yes word of a language we have no table for ("sim", "oui", "ja"): never a yes to a proposal."""
    return any(w in foreign.YES for w in _WORD.findall(fold(text)))


def known_words(text: str) -> list[str]:
    """The words of ``text`` that are marker words of a language we have a table for."""
    return [w for w in _WORD.findall(fold(text)) if any(w in spec.markers for spec in LANGUAGES.values())]


def detect(text: str, languages: tuple[str, ...]) -> str:
    """A declared language code, ``OTHER``, or "" when the message is too short to tell."""
    return detect_scored(text, languages)[0]


def detect_scored(text: str, languages: tuple[str, ...]) -> tuple[str, int]:
    """(``detect``'s answer, by how many marker words it beat the runner-up)."""
    if _FOREIGN_SCRIPT.search(text):
        return OTHER, 9
    words = _WORD.findall(fold(text))
    if not words:
        return "", 0
    scores = {code: sum(w in LANGUAGES[code].markers for w in words) for code in LANGUAGES}
    if scores["es"] and any(ch in text for ch in "¿¡ñÑ"):
        scores["es"] += 2
    foreign_scores = {code: sum(foreign.STRONG_WEIGHT if w in foreign.STRONG else 1 for w in words if w in markers)
                      for code, markers in foreign.MARKERS.items()}
    best_known = max(scores.values())
    best_foreign = max(foreign_scores.values())
    if any(ch in foreign.LETTERS for ch in text.lower()):
        best_foreign += foreign.STRONG_WEIGHT               # "não", "ça", "groß": letters we do not write
    if best_foreign >= 2 and best_foreign > best_known:
        return OTHER, best_foreign - best_known
    if best_known == 0:
        # several words and not one of them known: a language we were not told about (margin 0: a
        # guess the caller drops when a declared language's pattern matched the message)
        return (OTHER, 0) if len(words) >= 3 and best_foreign >= 1 or len(words) >= 4 else ("", 0)
    ranked = sorted(scores, key=lambda c: -scores[c])
    code, margin = ranked[0], scores[ranked[0]] - scores[ranked[1]]
    if margin == 0:
        return "", 0
    if code not in languages:
        return (OTHER, margin) if scores[code] >= 2 else ("", 0)
    return code, margin
