"""What a patient's message says, by rules (deterministic, offline), read with the pattern tables
of the tenant's languages (``services.scheduling.lang``). Urgent symptoms and requests for a
person are looked for in every language we have a table for, whatever the tenant declared (urgent
symptoms with each language's lexicon, ``services.scheduling.urgency``).

``read(text, languages)`` -> ``Reading``; ``Reading.answer`` is the answer to a yes/no question:
``yes`` only when it is unambiguous (a yes, and no hedge, no "no", no other question or new
date in the same message), ``hedge`` when the patient is undecided, ``no``, or "".
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone

from services.scheduling import dates, lang, urgency
from services.scheduling.lang import LANGUAGES, en, es

_ORDINAL_TABLES = {"en": (en.ORDINAL, en.ORDINALS), "es": (es.ORDINAL, es.ORDINALS)}
_PICK_TABLES = {"en": (en.PICK, en.PICKS), "es": (es.PICK, es.PICKS)}
LOGISTICS = ("location", "parking", "bring", "hours")
#: Affirmatives too short or too common to mean yes on their own (Spanish "y" is "and").
NOT_A_YES = frozenset({"y", "k", "si?", "ok?"})
#: A bare acknowledgement in any language we read ("ok", "vale"): read, not agreed to a booking.
ACKS = en.ACKS | es.ACKS
_LEXICONS = tuple(spec.urgency for spec in LANGUAGES.values())
_INTERJECTION = re.compile(r"^(?:ah|oh|hm+|mm+|well|ya|pues)\W+")
#: An acknowledgement opening a message ("ok then the first one", "vale, la primera"): it picks, it does not
#: agree to book; a yes naming a time needs a yes word after it ("ok yes, book the first one").
_LEADING_ACK = re.compile(r"^\W*(?:(?:ah|oh|well|pues|ya)\W+)?(?:ok(?:ay|ey)?|k|vale|bueno|alright|all right|fine|sure)(?:\s+then)?\b\W*", re.I)
#: Words that choose a time rather than agree to book it ("I'll take the latest one", "me viene bien la primera").
_CHOOSING = re.compile(r"\bi'?ll take\b|\b(?:me )?(?:viene|parece|queda|va) bien\b|\bthat works\b|\besta bien\b|\bworks for me\b", re.I)
_PREFERS = re.compile(r"\b(mejor|better|rather|instead|prefer\w*|actually|mas bien|en vez|en cambio)\b", re.I)
#: A choice the patient rules out ("not the first one", "no la primera").
_RULED_OUT = re.compile(r"(?:\bnot|n'?t|\bno|\bni)\s+(?:\w+\s+)?$", re.I)


def _source(code: str, text: str, folded: str) -> str:
    return text if code == "en" else folded


def _hit(name: str, codes, text: str, folded: str) -> bool:
    return any(LANGUAGES[c].patterns[name].search(_source(c, text, folded)) for c in codes)


@dataclass
class Reading:
    text: str
    language: str = ""                     # detected: a declared code, lang.OTHER, or "" (cannot tell)
    margin: int = 0                        # marker words by which that language won
    urgent: bool = False
    staff: bool = False
    yes: bool = False
    no: bool = False
    hedge: bool = False
    thanks: bool = False
    goodbye: bool = False
    status: bool = False
    cancel: bool = False
    move: bool = False
    question: bool = False
    names_date: bool = False               # a day or time ("tomorrow at 3", "the afternoon ones")
    scheduling_words: bool = False
    greeting: bool = False
    availability: bool = False
    ack: bool = False                      # a bare acknowledgement ("ok", "vale"): not a yes to book
    pick: int | None = None                # a choice named inside a longer message ("yes, the first one")
    prefers: bool = False                  # "better", "rather", "mejor": a preference, with a "no" a new choice
    strong_yes: bool = False               # a yes word besides an opening "ok" / "vale"
    logistics: list[str] = field(default_factory=list)
    choice: int | None = None
    date_text: str = ""                    # the message in the words ``dates.parse`` reads

    @property
    def answer(self) -> str:
        if self.hedge:
            return "hedge"
        if self.no:
            return "no"
        if self.yes and not (self.question and not self.logistics) and not (self.cancel or self.move or self.names_date):
            return "yes"
        return ""

    @property
    def consents_to_pick(self) -> bool:
        """An unambiguous yes to one named offer: "yes, book the first one", "sí, el segundo"."""
        return (self.strong_yes and self.pick is not None and not self.hedge and not self.no and not self.question
                and not self.cancel)

    @property
    def consents_to_cancel(self) -> bool:
        """An unambiguous yes to cancelling: "yes, please cancel it", "sí, cancele la cita"."""
        return self.yes and self.cancel and not self.hedge and not self.no and not self.question and not self.move

    @property
    def unintelligible(self) -> bool:
        """No word of any language we read, no digit, nothing recognised ("jjjjj", "kkkk ,,, ;;")."""
        flags = (self.urgent, self.staff, self.yes, self.ack, self.no, self.hedge, self.thanks, self.goodbye, self.status,
                 self.cancel, self.move, self.question, self.greeting, self.availability, self.logistics)
        return (self.language == "" and self.margin == 0 and not any(flags) and self.pick is None
                and not any(ch.isdigit() for ch in self.text) and not lang.known_words(self.text))

    @property
    def only_thanks(self) -> bool:
        return (self.thanks or self.goodbye) and not (self.status or self.cancel or self.move or self.logistics
                                                      or self.no or self.hedge or self.choice is not None
                                                      or self.pick is not None)


def read(text: str, languages: tuple[str, ...]) -> Reading:
    folded = lang.fold(text)
    codes = [c for c in languages if c in LANGUAGES]
    detected, margin = lang.detect_scored(text, tuple(codes))
    r = Reading(text=text, language=detected, margin=margin)
    r.urgent = urgent(text)
    r.staff = person_request(text)
    for name in ("no", "hedge", "thanks", "goodbye", "status", "cancel", "question", "scheduling_words", "greeting",
                 "availability"):
        setattr(r, name, _hit(name, codes, text, folded))
    r.move = _hit("reschedule", codes, text, folded)
    bare = folded.strip(" .!¡,")
    r.ack = _INTERJECTION.sub("", bare) in ACKS
    # a pause ("ok one sec", "un momento") is not an answer: it keeps a proposal open, like a hedge
    r.hedge = r.hedge or _hit("pause", codes, text, folded)
    r.yes = (_hit("yes", codes, text, folded) and bare not in NOT_A_YES and not r.ack
             and not lang.foreign_yes(text))       # "sim", "claro que sim", "oui": another language's yes
    r.prefers = bool(_PREFERS.search(folded))
    rest = _CHOOSING.sub(" ", _LEADING_ACK.sub("", lang.fold(text))).strip()
    r.strong_yes = r.yes and bool(rest) and _hit("yes", codes, rest, rest)
    r.logistics = [topic for topic in LOGISTICS if _hit(topic, codes, text, folded)]
    r.choice = ordinal(text, codes)
    r.pick = r.choice if r.choice is not None else pick(text, codes)
    # Spanish date words never collide with English ones, so the conversion is safe on any message
    r.date_text = LANGUAGES["es"].to_english_dates(folded) if "es" in codes else text
    r.names_date = dates.parse(r.date_text, datetime.now(timezone.utc)) is not None
    if r.language == lang.OTHER and r.margin == 0 and (r.yes or r.no or r.hedge or r.thanks or r.status or r.cancel
                                                       or r.move or r.pick is not None or r.names_date):
        r.language = ""                    # no marker word, but a declared language's pattern read it
    return r


def urgent(text: str) -> bool:
    """Urgent symptoms, read with every language's lexicon (a mixed message needs both)."""
    return urgency.urgent(lang.fold(text), _LEXICONS)


def person_request(text: str) -> bool:
    """A request for a person (a nurse, a call back), read with every language's table."""
    return _hit("staff", LANGUAGES, text, lang.fold(text))


def urgent_findings(text: str) -> list[urgency.Finding]:
    """The urgent concepts found in ``text`` (concept, language, phrase), for tests and tuning."""
    return urgency.findings(lang.fold(text), _LEXICONS)


def pick(text: str, languages=("en", "es")) -> int | None:
    folded = lang.fold(text)
    for code in languages:
        pattern, table = _PICK_TABLES[code]
        source = _source(code, text, folded)
        for m in pattern.finditer(source):
            if _RULED_OUT.search(source[:m.start()]):
                continue
            word = next(g for g in m.groups() if g)
            return table[word.lower()]
    return None


def ordinal(text: str, languages=("en", "es")) -> int | None:
    folded = lang.fold(text)
    for code in languages:
        pattern, table = _ORDINAL_TABLES[code]
        m = pattern.match(_source(code, text, folded))
        if m:
            return table[m.group(1).lower()]
    return None
