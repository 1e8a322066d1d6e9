"""Urgent symptoms in a patient's message, read with each language's symptom lexicon (``URGENCY`` in
``services/scheduling/lang/<code>.py``). Deterministic and offline; it leans towards handing over:
a safety miss is far worse than an extra call from a nurse.

A lexicon has
- ``concepts``: symptom concept -> entries; an entry is one phrase, or a tuple of phrases that must all
  be found in the same sentence ("stomach" + "pain" + "really bad", "fever" + "38.5", "blood" + "stool");
  the first phrase of a tuple is the anchor the guards look at;
- ``spellings``: (misspelling, word) pairs rewritten first ("siezure" -> "seizure", "bomito" -> "vomito");
  letters repeated three times or more are cut to two ("dizzzy"), so shouting spellings read too;
- ``not_symptoms``: idioms, tests and readings blanked out before anything is matched ("dying to know",
  "blood test", "blood pressure", "me da dolor de cabeza", "análisis de sangre");
- ``negation``: a cue in the same clause just before the anchor cancels it ("no chest pain", "sin fiebre");
- ``hypothetical``: a cue in the same clause before the anchor cancels it ("if I get a rash");
- ``past``: a cue anywhere in the clause cancels it ("the diarrhoea from last month", "years ago");
- ``resolved``: a cue anywhere in the clause cancels it ("is gone", "ya se me quitó"), except for the
  ``lasting`` concepts, which stay urgent after they pass (fainting, seizure, one-sided weakness, chest
  pain, blood, breathing, suicidal thoughts).

Text is matched lower case and accent-folded (``lang.fold``), so every lexicon is written that way.
Each language's lexicon is applied to every message (mixed English/Spanish messages included).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

#: Sentences: split on . ! ? ; and new lines, but not on a decimal point ("38.5").
_SENTENCE = re.compile(r"(?<!\d)\.(?!\d)|[!?¡¿;\n]+|\.(?=\s|$)")
#: A symptom joined to a negated one ("no blisters or peeling"): the negation reaches it.
_COORDINATED = re.compile(r"(?<!\w)(or|nor|ni|o)\s*$")
_REPEATED = re.compile(r"([^\W\d])\1{2,}")
_WORDS_BEFORE = 3                           # how far back a negation or "if" cue reaches


@dataclass(frozen=True)
class Lexicon:
    code: str
    concepts: dict[str, tuple[tuple[re.Pattern, ...], ...]]
    spellings: tuple[tuple[re.Pattern, str], ...]
    lasting: frozenset[str]
    not_symptoms: re.Pattern
    clause_break: re.Pattern                # also splits on commas and colons
    negation: re.Pattern
    hypothetical: re.Pattern
    past: re.Pattern
    resolved: re.Pattern


@dataclass(frozen=True)
class Finding:
    concept: str
    language: str
    phrase: str


def _alternation(phrases) -> re.Pattern:
    return re.compile(r"(?<!\w)(?:" + "|".join(phrases) + r")(?!\w)")


def compile_lexicon(code: str, table: dict) -> Lexicon:
    """A language module's ``URGENCY`` table, compiled (a bad table fails at import, not on a message)."""
    unknown = set(table["lasting"]) - set(table["concepts"])
    if unknown:
        raise ValueError(f"{code} URGENCY: lasting concepts not in the lexicon: {sorted(unknown)}")
    concepts = {}
    for name, entries in table["concepts"].items():
        compiled = []
        for entry in entries:
            parts = (entry,) if isinstance(entry, str) else tuple(entry)
            compiled.append(tuple(_alternation([p]) for p in parts))
        concepts[name] = tuple(compiled)
    spellings = tuple((_alternation([variant]), word) for variant, word in table["spellings"])
    return Lexicon(code=code, concepts=concepts, spellings=spellings, lasting=frozenset(table["lasting"]),
                   not_symptoms=_alternation(table["not_symptoms"]),
                   clause_break=re.compile(_alternation(table["clause_break"]).pattern + r"|[,:]"),
                   negation=_alternation(table["negation"]), hypothetical=_alternation(table["hypothetical"]),
                   past=_alternation(table["past"]), resolved=_alternation(table["resolved"]))


def _clause(lexicon: Lexicon, sentence: str, at: int) -> tuple[str, str]:
    """(the clause's text before position ``at``, the whole clause) of the clause holding ``at``."""
    start, end = 0, len(sentence)
    for m in lexicon.clause_break.finditer(sentence):
        if m.end() <= at:
            start = m.end()
        elif m.start() >= at:
            end = m.start()
            break
    return sentence[start:at], sentence[start:end]


def _guarded(lexicon: Lexicon, lexicons, concept: str, sentence: str, at: int) -> bool:
    """Negation is read in the lexicon's own language (Spanish "no" starts "no puedo respirar"); "if",
    past and resolved cues of any language count, for mixed messages ("la diarrea from last month")."""
    before, clause = _clause(lexicon, sentence, at)
    recent = " ".join(before.split()[-_WORDS_BEFORE:])
    if lexicon.negation.search(recent):
        return True
    if _COORDINATED.search(before) and lexicon.negation.search(before):
        return True                         # "no fever or chills", "sin fiebre ni escalofríos"
    if any(other.hypothetical.search(before) or other.past.search(clause) for other in lexicons):
        return True
    return concept not in lexicon.lasting and any(other.resolved.search(clause) for other in lexicons)


def _sentences(lexicon: Lexicon, folded: str) -> list[str]:
    cleaned = _REPEATED.sub(r"\1\1", folded)
    for variant, word in lexicon.spellings:
        cleaned = variant.sub(word, cleaned)
    cleaned = lexicon.not_symptoms.sub(" ~ ", cleaned)
    return [s for s in _SENTENCE.split(cleaned) if s and s.strip()]


def findings(folded: str, lexicons) -> list[Finding]:
    """Every urgent concept found in accent-folded ``folded`` and not cancelled by a guard."""
    lexicons = tuple(lexicons)
    found = []
    for lexicon in lexicons:
        for sentence in _sentences(lexicon, folded):
            for concept, entries in lexicon.concepts.items():
                for parts in entries:
                    anchor = parts[0].search(sentence)
                    if not anchor or not all(p.search(sentence) for p in parts[1:]):
                        continue
                    # the first occurrence of the anchor that no guard cancels
                    hit = next((m for m in parts[0].finditer(sentence)
                                if not _guarded(lexicon, lexicons, concept, sentence, m.start())), None)
                    if hit:
                        found.append(Finding(concept, lexicon.code, hit.group(0)))
                        break
    return found


def urgent(folded: str, lexicons) -> bool:
    return bool(findings(folded, lexicons))
