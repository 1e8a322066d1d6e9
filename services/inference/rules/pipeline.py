"""The medspaCy pipeline, built once per process from the rule tables.

Components: medspaCy's tokenizer, a line-break boundary marker, spaCy's ``sentencizer`` (in
place of PyRuSH), medspaCy's TargetMatcher, ConText and Sectionizer, all with this package's
rules only (no default rule files, no QuickUMLS: nothing is read from or written to the network).

``build_pipeline()`` is what ``bench.extraction`` runs as the bare baseline; ``get_pipeline()``
caches it for the engine.
"""
from __future__ import annotations

import functools
import re
import threading

from spacy.language import Language
from spacy.tokens import Doc

from services.inference.rules.modifiers import MODIFIER_RULES, TERMINATING_TYPES
from services.inference.rules.sections import section_rules
from services.inference.rules.vocabulary import target_table

#: Tokens before a "." that does not end a sentence ("vs.", "Dr."); a single letter counts
#: too when the next word is lower-case ("C. diff").
_ABBREVIATION = re.compile(r"^(?:vs|dr|mr|mrs|ms|st|approx|gr|e\.g|i\.e|etc|pt|no|fig|hx|sx|dx|tx|q|wk|wks|mo|yr|yrs|b\.i\.d|t\.i\.d)$",
                           re.IGNORECASE)
LINE_BOUNDARY = "vigil_line_boundaries"
MISSPELLINGS = "vigil_misspellings"
_JOIN = re.compile(r"^[ \t]*(?:-[ \t]*)?$")
_IR_PREFIX = re.compile(r"\bir[ \t]*-[ \t]*$", re.IGNORECASE)


@Language.component(MISSPELLINGS)
def mark_misspellings(doc: Doc) -> Doc:
    """Misspelled category words become mentions of their category (before ConText runs, so
    they are negated, hedged and attributed like any other mention). A misspelling right after
    an immune qualifier or a checkpoint-inhibitor name takes it in ("immune mediated hepatitus")."""
    from spacy.tokens import Span

    from services.inference.rules.spelling import misspellings
    from services.inference.rules.vocabulary import is_qualified

    found = misspellings(doc.text)
    if not found:
        return doc
    ents = list(doc.ents)
    taken = [(e.start_char, e.end_char) for e in ents]
    for start, end, category in found:
        if any(s < end and start < e for s, e in taken):
            continue
        span = doc.char_span(start, end, label=category, alignment_mode="expand")
        if span is None:
            continue
        before = [e for e in ents if e.end_char <= start and e.label_ in ("ICI", "IMMUNE")
                  and _JOIN.match(doc.text[e.end_char:start]) and is_qualified(e.text)]
        if before:
            prefix = before[-1]
            ents.remove(prefix)
            span = Span(doc, prefix.start, span.end, label=category)
        else:
            ir = _IR_PREFIX.search(doc.text, max(0, start - 8), start)
            widened = doc.char_span(ir.start(), end, label=category, alignment_mode="expand") if ir else None
            if widened is not None and not any(e.start_char < start and ir.start() < e.end_char for e in ents):
                span = widened
        ents.append(span)
        taken.append((span.start_char, span.end_char))
    doc.ents = sorted(ents, key=lambda e: e.start)
    return doc


@Language.component(LINE_BOUNDARY)
def mark_line_boundaries(doc: Doc) -> Doc:
    """A new line starts a sentence unless it continues a wrapped one (starts lower-case
    after a single line break); an abbreviation's period never ends one."""
    for i in range(1, len(doc)):
        token, prev = doc[i], doc[i - 1]
        if token.is_space:
            continue
        gap = prev.whitespace_ if not prev.is_space else prev.text + prev.whitespace_
        j = i - 1
        while j >= 0 and doc[j].is_space:
            j -= 1
            if j >= 0:
                gap = doc[j].whitespace_ + gap
        if "\n" in gap:
            wrapped = token.text[:1].islower() and gap.count("\n") == 1 and j >= 0 and doc[j].text not in (":", ".", "?", "!")
            token.is_sent_start = not wrapped
        elif j >= 1 and doc[j].text == "." and not doc[j - 1].whitespace_ and (
                _ABBREVIATION.match(doc[j - 1].text)
                or (len(doc[j - 1].text) == 1 and doc[j - 1].is_alpha and token.text[:1].islower())):
            token.is_sent_start = False
        elif j >= 0 and len(doc[j].text) > 1 and doc[j].text.endswith(".") and token.text[:1].isupper() \
                and not _ABBREVIATION.match(doc[j].text[:-1]) and doc[j].text[:-1].lower() != "c":
            token.is_sent_start = True  # the tokenizer kept the period on its word ("B.")
    return doc


def _header_pattern(headers: list[str]) -> str:
    """A header opens a line and ends with ":" (after an optional short parenthesis: "ROS (RN
    checklist):"), or stands alone on its line ("ASSESSMENT AND PLAN")."""
    alternatives = "|".join(re.escape(h).replace(r"\ ", r"\s+") for h in sorted(headers, key=lambda h: (-len(h), h)))
    return rf"(?m)^[ \t]*(?:{alternatives})[ \t]*(?:\([^)\n]{{0,40}}\))?[ \t]*(?::|[ \t]*$)"


@functools.lru_cache(maxsize=1)
def header_regex() -> re.Pattern[str]:
    """Any section header at the start of a line (case-insensitive)."""
    return re.compile(_header_pattern([header for _, header in section_rules()]).replace("(?m)^", "^"),
                      re.IGNORECASE)


def build_pipeline() -> Language:
    """A fresh pipeline with every rule loaded (about half a second)."""
    import medspacy
    from medspacy.context import ConTextRule
    from medspacy.section_detection import SectionRule
    from medspacy.target_matcher import TargetRule

    nlp = medspacy.load(medspacy_enable=["medspacy_tokenizer", "medspacy_target_matcher", "medspacy_context"],
                        load_rules=False)
    nlp.add_pipe(LINE_BOUNDARY, before="medspacy_target_matcher")
    nlp.add_pipe("sentencizer", before="medspacy_target_matcher")
    nlp.get_pipe("medspacy_target_matcher").add(
        [TargetRule(literal=f"{label}/{strength}", category=label, pattern=pattern, attributes=None,
                    metadata={"strength": strength})
         for label, strength, pattern in target_table()])
    nlp.add_pipe(MISSPELLINGS, after="medspacy_target_matcher")
    nlp.remove_pipe("medspacy_context")
    context = nlp.add_pipe("medspacy_context", config={"rules": None, "span_attrs": None,
                                                       "terminating_types": TERMINATING_TYPES})
    context.add([_context_rule(ConTextRule, phrase, category, direction, scope)
                 for phrase, category, direction, scope in MODIFIER_RULES])
    grouped: dict[str, list[str]] = {}
    for category, header in section_rules():
        grouped.setdefault(category, []).append(header)
    sectionizer = nlp.add_pipe("medspacy_sectionizer", config={"rules": None, "span_attrs": None})
    sectionizer.add([SectionRule(literal=category, category=category, pattern=_header_pattern(headers))
                     for category, headers in grouped.items()])
    return nlp


def _context_rule(cls, phrase: str, category: str, direction: str, scope: int | None):
    if phrase.startswith("re:"):
        return cls(literal=phrase[3:], category=category, direction=direction, pattern=phrase[3:], max_scope=scope)
    return cls(literal=phrase, category=category, direction=direction, max_scope=scope)


_LOCK = threading.Lock()


@functools.lru_cache(maxsize=1)
def get_pipeline() -> Language:
    """The process-wide pipeline (built on first use)."""
    return build_pipeline()


def parse(text: str) -> Doc:
    """Run the shared pipeline; serialised because spaCy matchers are not thread-safe."""
    nlp = get_pipeline()
    with _LOCK:
        return nlp(text)
