"""Urgent symptoms in a patient's message, read with each language's symptom lexicon (``URGENCY`` in
``services/scheduling/lang/<code>_urgency.py``). Deterministic and offline; it leans towards handing over:
a safety miss is far worse than an extra call from a nurse.

A lexicon has
- ``concepts``: symptom concept -> entries; an entry is one phrase, or a tuple of phrases that must all
  be found in the same sentence ("stomach" + "pain" + "really bad", "fever" + "38.5", "blood" + "stool");
  the first phrase of a tuple is the anchor the guards look at;
- ``vocabulary``: symptom words an unknown word one typing edit away (two from eight letters, same first
  letter) is corrected to ("breth" -> "breath"); ``common``: ordinary words never corrected; letters
  repeated three times or more are cut to two, or one when that makes a known word ("dizzzy", "sooo");
- ``spellings``: (misspelling, word) pairs rewritten next ("siezure" -> "seizure", "bomito" -> "vomito",
  "sob" -> "short of breath");
- ``not_symptoms``: idioms, tests and readings blanked out before anything is matched ("dying to know",
  "blood test", "blood pressure", "me da dolor de cabeza", "análisis de sangre");
- ``negation``: a cue in the same clause just before the anchor cancels it ("no chest pain", "sin fiebre");
- ``hypothetical``: a cue in the same clause before the anchor cancels it ("if I get a rash");
- ``asking``: a question that may be about the patient's own symptom ("is it normal to ...", "¿es normal
  que ...?"): it cancels like ``hypothetical``, but not a ``lasting`` concept ("is it normal to feel like my
  chest is squeezing?" is urgent);
- ``denial``: a symptom asked and answered no by the patient ("fever? nope.", "¿tos? tampoco.") is blanked
  out: the answer word is read only when it closes the sentence;
- ``past``: a cue anywhere in the clause cancels it ("the diarrhoea from last month", "years ago");
- ``resolved`` / ``stable``: a cue anywhere in the clause cancels it ("is gone", "ya se me quitó", "same as
  always", "lo de siempre"), except for the ``lasting`` concepts, which stay urgent after they pass
  (fainting, seizure, one-sided weakness, chest pain, blood, breathing, confusion, suicidal thoughts);
- ``report`` / ``mild`` / ``scheduling``: the precaution - with no concept found, a symptom word in a message
  that says nothing about scheduling, and is not mild, past, resolved or stable, is a ``symptom_report``.

Text is matched lower case and accent-folded (``lang.fold``), so every lexicon is written that way.
Each language's lexicon is applied to every message (mixed English/Spanish messages included).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

#: Misspelt symptom words are corrected to the lexicon's ``vocabulary`` when at most this many edits away
#: (one for words of 5-7 letters, two from 8; shorter words are never corrected).
_FUZZY_MIN, _FUZZY_TWO = 5, 8
_ALPHA = re.compile(r"[^\W\d_]+")
#: Sentences: split on . ! ? ; and new lines, but not on a decimal point ("38.5").
_SENTENCE = re.compile(r"(?<!\d)\.(?!\d)|[!?¡¿;\n]+|\.(?=\s|$)")
#: A symptom joined to a negated one ("no blisters or peeling"): the negation reaches it.
_COORDINATED = re.compile(r"(?<!\w)(or|nor|ni|o)\s*$")
_REPEATED = re.compile(r"([^\W\d])\1{2,}")
_ASIDE_WORDS = 4                            # "annoying but not bad": a short clause that only rates the symptom
_WORRY = re.compile(r"(?<!\w)(worr\w*|scar\w*|concern\w*|afraid|nervous|preocup\w*|miedo|asustad\w*|nervios\w*)(?!\w)")
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
    asking: re.Pattern
    denial: re.Pattern                      # "fever? nope." - the question and its no
    past: re.Pattern
    resolved: re.Pattern
    stable: re.Pattern                      # "same as always", "lo de siempre": known and unchanged
    vocabulary: frozenset[str] = frozenset()  # symptom words a misspelling is corrected to
    known: frozenset[str] = frozenset()     # ordinary words of the language: never corrected
    report: re.Pattern | None = None        # a symptom word: with no scheduling in the message, to staff
    mild: re.Pattern | None = None          # "a little", "un poco": a mild mention is not a report
    scheduling: re.Pattern | None = None    # the message is about scheduling (then a bare symptom word is not a report)
    _fixes: dict = field(default_factory=dict, compare=False, hash=False, repr=False)


@dataclass(frozen=True)
class Finding:
    concept: str
    language: str
    phrase: str


def _alternation(phrases) -> re.Pattern:
    return re.compile(r"(?<!\w)(?:" + "|".join(phrases) + r")(?!\w)")


def compile_lexicon(code: str, table: dict, words=()) -> Lexicon:
    """A language module's ``URGENCY`` table, compiled (a bad table fails at import, not on a message);
    ``words``: the language's ordinary words (its detection markers), never "corrected" to a symptom."""
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
                   asking=_alternation(table["asking"]),
                   denial=re.compile(r"[^.?!;\n¿¡]{1,40}\?\s*(?:" + "|".join(table["denial"]) + r")\s*(?=[.!,;\n]|$)"),
                   past=_alternation(table["past"]), resolved=_alternation(table["resolved"]),
                   stable=_alternation(table["stable"]), vocabulary=frozenset(table["vocabulary"]),
                   known=frozenset(words) | frozenset(table["common"]) | frozenset(table["vocabulary"]),
                   report=_alternation(table["report"]), mild=_alternation(table["mild"]),
                   scheduling=_alternation(table["scheduling"]))


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
    if concept not in lexicon.lasting and any(other.asking.search(before) for other in lexicons):
        return True
    return concept not in lexicon.lasting and any(other.resolved.search(clause) or other.stable.search(clause)
                                                  for other in lexicons)


_KEYBOARD = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
_NEAR = {(a, b) for row in _KEYBOARD for a, b in zip(row, row[1:])}
_NEAR |= {(top[i], low[j]) for top, low in zip(_KEYBOARD, _KEYBOARD[1:]) for i in range(len(top))
          for j in (i - 1, i) if 0 <= j < len(low)}
_NEAR |= {(b, a) for a, b in _NEAR}
#: letters people write for one another: vowels, and sounds ("confuzed", "sieze", "dissy")
_SOUNDS = ("aeiouy", "ckqsz", "gj", "mn", "bv")


def _plausible(a: str, b: str) -> bool:
    """A substitution a typist or a speller makes: a neighbouring key, or a letter that sounds alike."""
    return (a, b) in _NEAR or any(a in group and b in group for group in _SOUNDS)


def _distance(a: str, b: str, limit: int) -> int:
    """Typing distance: insert, delete and swapping two neighbours cost 1, as does replacing a letter with a
    neighbouring key or one that sounds alike; any other replacement costs 3 (a different word, not a typo:
    "sharing" is not "shaking"). ``limit + 1`` once over ``limit``."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    before, row = None, list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            current[j] = min(row[j] + 1, current[j - 1] + 1,
                             row[j - 1] + (0 if ca == cb else 1 if _plausible(ca, cb) else 3))
            if before is not None and i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                current[j] = min(current[j], before[j - 2] + 1)
        if min(current) > limit:
            return limit + 1
        before, row = row, current
    return row[-1]


def _fix_word(lexicon: Lexicon, known: frozenset[str], word: str) -> str:
    """A word as the lexicon reads it: letters repeated three times or more cut to two, or to one when that
    makes a word we know ("sooo" -> "so", "dizzzy" -> "dizzy"); an unknown word of five letters or more one
    or two edits from a symptom word of the lexicon (same first letter) becomes that word ("breth" ->
    "breath", "confuzed" -> "confused")."""
    fixed = lexicon._fixes.get(word)
    if fixed is not None:
        return fixed
    fixed = word
    if _REPEATED.search(word):
        two, one = _REPEATED.sub(r"\1\1", word), _REPEATED.sub(r"\1", word)
        fixed = two if two in known or one not in known else one
    if len(fixed) >= _FUZZY_MIN and fixed not in known:
        limit = 2 if len(fixed) >= _FUZZY_TWO else 1
        best = min(((_distance(fixed, v, 2 if len(v) >= _FUZZY_TWO else 1), v) for v in lexicon.vocabulary
                    if v[0] == fixed[0] and (limit == 1 or len(v) >= _FUZZY_TWO or abs(len(v) - len(fixed)) <= 1)),
                   default=(limit + 1, fixed))
        limit = min(limit, 2 if len(best[1]) >= _FUZZY_TWO else 1)
        if best[0] <= limit:
            fixed = best[1]
    if len(lexicon._fixes) < 20000:
        lexicon._fixes[word] = fixed
    return fixed


def _normalised(lexicon: Lexicon, known: frozenset[str], folded: str) -> str:
    return _ALPHA.sub(lambda m: _fix_word(lexicon, known, m.group(0)), folded)


def _sentences(lexicon: Lexicon, folded: str, known: frozenset[str] = frozenset()) -> list[str]:
    cleaned = _normalised(lexicon, known or lexicon.known, folded)
    for variant, word in lexicon.spellings:
        cleaned = variant.sub(word, cleaned)
    cleaned = lexicon.not_symptoms.sub(" ~ ", cleaned)
    cleaned = lexicon.denial.sub(" ~ .", cleaned)
    return [s for s in _SENTENCE.split(cleaned) if s and s.strip()]


def findings(folded: str, lexicons) -> list[Finding]:
    """Every urgent concept found in accent-folded ``folded`` and not cancelled by a guard."""
    lexicons = tuple(lexicons)
    known = frozenset().union(*(lx.known for lx in lexicons))
    found = []
    for lexicon in lexicons:
        for sentence in _sentences(lexicon, folded, known):
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
    if not found:
        found = _reports(folded, lexicons, known)
    return found


def _reports(folded: str, lexicons, known: frozenset[str]) -> list[Finding]:
    """The precaution: a message that speaks of a symptom (not negated, past, resolved, stable or mild) and
    not of scheduling at all is a symptom report, and a nurse should read it."""
    sentences = [(lexicon, _sentences(lexicon, folded, known)) for lexicon in lexicons]
    if any(lexicon.scheduling.search(sentence) for lexicon, group in sentences for sentence in group):
        return []
    # the weakest signal: a past, resolved or stable cue anywhere in the message cancels it
    if any(other.past.search(sentence) or other.resolved.search(sentence) or other.stable.search(sentence)
           for _, group in sentences for sentence in group for other in lexicons):
        return []
    for lexicon, group in sentences:
        for sentence in group:
            for m in lexicon.report.finditer(sentence):
                _, clause = _clause(lexicon, sentence, m.start())
                if _guarded(lexicon, lexicons, "symptom_report", sentence, m.start()):
                    continue
                if any(other.mild.search(clause) for other in lexicons) or _mild_aside(lexicon, lexicons, sentence):
                    continue
                return [Finding("symptom_report", lexicon.code, m.group(0))]
    return []


def _mild_aside(lexicon: Lexicon, lexicons, sentence: str) -> bool:
    """A clause of the sentence that only says it is mild ("itchy scalp, annoying but not bad"): a mild cue in
    a clause with no symptom word of its own speaks of the symptom before it."""
    clauses = [c for c in lexicon.clause_break.split(sentence) if c and c.strip()]
    return any(len(c.split()) <= _ASIDE_WORDS and not _WORRY.search(c) and any(other.mild.search(c) for other in lexicons)
               and not any(other.report.search(c) for other in lexicons) for c in clauses)


def urgent(folded: str, lexicons) -> bool:
    return bool(findings(folded, lexicons))
