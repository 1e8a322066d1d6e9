"""The medspaCy pipeline, built once per process from the rule tables.

Components: medspaCy's tokenizer, a line-break boundary marker, spaCy's ``sentencizer`` (in
place of PyRuSH), medspaCy's TargetMatcher, ConText and Sectionizer, all with this package's
rules only (no default rule files, no QuickUMLS: nothing is read from or written to the network).

``build_pipeline(engine=False)`` is what ``bench.extraction`` runs as the bare medspaCy baseline;
``get_pipeline()`` caches the engine's pipeline (its own target component, same matches as
medspaCy's TargetMatcher but built for speed, ConText through ``rules/context.py`` (same results,
fewer calls), and the misspelling component).
"""
from __future__ import annotations

import functools
import re
import threading

from spacy.language import Language
from spacy.tokens import Doc

from services.inference.rules import context as context_module
from services.inference.rules.context import quicken
from services.inference.rules.modifiers import MODIFIER_RULES, TERMINATING_TYPES
from services.inference.rules.scan import Scanner, ScanSet, fold
from services.inference.rules.sections import section_rules
from services.inference.rules.tokencache import TokenCache
from services.inference.rules.vocabulary import target_table

#: Tokens before a "." that does not end a sentence ("vs.", "Dr."); a single letter counts
#: too when the next word is lower-case ("C. diff").
_ABBREVIATION = re.compile(r"^(?:vs|dr|mr|mrs|ms|st|approx|gr|e\.g|i\.e|etc|pt|no|fig|hx|sx|dx|tx|q|wk|wks|mo|yr|yrs|b\.i\.d|t\.i\.d)$",
                           re.IGNORECASE)
LINE_BOUNDARY = "vigil_line_boundaries"
#: ``doc.user_data`` key of the note text (``parse`` puts it there; it is ``doc.text``).
TEXT_KEY = context_module.TEXT_KEY
MISSPELLINGS = "vigil_misspellings"
_JOIN = re.compile(r"^[ \t]*(?:-[ \t]*)?$")
_IR_PREFIX = re.compile(r"\bir[ \t]*-[ \t]*$", re.IGNORECASE)


def note_text(doc: Doc) -> str:
    """The note text: the one ``parse`` was given, else rebuilt from the tokens (spaCy builds
    ``doc.text`` anew on every access)."""
    text = doc.user_data.get(TEXT_KEY)
    return text if text is not None else doc.text_with_ws


@Language.component(MISSPELLINGS)
def mark_misspellings(doc: Doc) -> Doc:
    """Misspelled category words become mentions of their category (before ConText runs, so
    they are negated, hedged and attributed like any other mention). A misspelling right after
    an immune qualifier or a checkpoint-inhibitor name takes it in ("immune mediated hepatitus")."""
    from spacy.tokens import Span

    from services.inference.rules.spelling import misspellings
    from services.inference.rules.vocabulary import is_qualified

    text = note_text(doc)
    found = misspellings(text)
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
                  and _JOIN.match(text[e.end_char:start]) and is_qualified(e.text)]
        if before:
            prefix = before[-1]
            ents.remove(prefix)
            span = Span(doc, prefix.start, span.end, label=category)
        else:
            ir = _IR_PREFIX.search(text, max(0, start - 8), start)
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
    after a single line break); an abbreviation's period never ends one. (Token texts, spaces and
    whitespace are read once into lists: spaCy makes a new Token object on every ``doc[i]``.)"""
    tokens = list(doc)
    texts = [t.text for t in tokens]
    after = [t.whitespace_ for t in tokens]
    space = [t.is_space for t in tokens]
    for i in range(1, len(tokens)):
        if space[i]:
            continue
        text = texts[i]
        gap = after[i - 1] if not space[i - 1] else texts[i - 1] + after[i - 1]
        j = i - 1
        while j >= 0 and space[j]:
            j -= 1
            if j >= 0:
                gap = after[j] + gap
        if "\n" in gap:
            wrapped = text[:1].islower() and gap.count("\n") == 1 and j >= 0 and texts[j] not in (":", ".", "?", "!")
            tokens[i].is_sent_start = not wrapped
        elif j >= 1 and texts[j] == "." and not after[j - 1] and (
                _ABBREVIATION.match(texts[j - 1])
                or (len(texts[j - 1]) == 1 and tokens[j - 1].is_alpha and text[:1].islower())):
            tokens[i].is_sent_start = False
        elif j >= 0 and len(texts[j]) > 1 and texts[j].endswith(".") and text[:1].isupper() \
                and not _ABBREVIATION.match(texts[j][:-1]) and texts[j][:-1].lower() != "c":
            tokens[i].is_sent_start = True  # the tokenizer kept the period on its word ("B.")
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


TARGETS = "vigil_targets"


def target_rules() -> list:
    """The TargetRules of the vocabulary, in the table's order (the order breaks ties)."""
    from medspacy.target_matcher import TargetRule

    return [TargetRule(literal=f"{label}/{strength}", category=label, pattern=pattern, attributes=None,
                       metadata={"strength": strength})
            for label, strength, pattern in target_table()]


class TargetSpans:
    """medspaCy's TargetMatcher for regular-expression rules, with the same results: every rule's
    matches snapped out to token boundaries, overlaps pruned by medspaCy's own
    ``prune_overlapping_matches`` (longest kept, the earlier rule on a tie), then added as
    entities in order, a span that overlaps an earlier one skipped. The difference is speed:
    the note text is built once per note, not once per rule (spaCy rebuilds ``doc.text`` on
    every access)."""

    def __init__(self, rules: list):
        from services.inference.rules.vocabulary import CATEGORY_TERMS, term_body

        self.rules = []
        for rule in rules:
            strength = (rule.metadata or {}).get("strength")
            terms = CATEGORY_TERMS.get(rule.category, {})
            # category terms: the bare term is scanned for, its optional qualifier read backwards
            # (the same matches as the full pattern, without trying every qualifier at every position)
            body = term_body(terms[strength]) if strength in terms else None
            full = re.compile(rule.pattern, re.IGNORECASE)
            self.rules.append((rule, Scanner(re.compile(body, re.IGNORECASE) if body else full), full if body else None))
        self.scans = ScanSet([scanner for _, scanner, _ in self.rules])  # one pass for every rule's start strings

    def __call__(self, doc: Doc) -> Doc:
        from medspacy.common.util import prune_overlapping_matches
        from spacy.tokens import Span

        from services.inference.rules.vocabulary import QUALIFIER_BEFORE

        text = note_text(doc)
        folded = fold(text)
        matches: list[tuple[int, int, int]] = []
        candidates = self.scans.candidates(folded)
        for index, (_, scanner, full) in enumerate(self.rules):
            previous_end = 0
            for found in scanner.finditer_at(text, candidates[index]):
                start, end = found.start(), found.end()
                if start < previous_end:
                    continue
                if full is not None:
                    qualifier = QUALIFIER_BEFORE.search(text, max(previous_end, start - 160), start)
                    whole = full.match(text, qualifier.start()) if qualifier is not None else None
                    if whole is not None:
                        start, end = whole.start(), whole.end()
                previous_end = end
                span = doc.char_span(start, end, alignment_mode="expand")
                if span is not None and len(span):
                    matches.append((index, span.start, span.end))
        ents: list[Span] = []
        covered: set[int] = set()
        for index, start, end in prune_overlapping_matches(matches):
            if covered.intersection(range(start, end)):
                continue
            rule = self.rules[index][0]
            span = Span(doc, start, end, label=rule.category)
            span._.target_rule = rule
            ents.append(span)
            covered.update(range(start, end))
        doc.ents = sorted(ents, key=lambda e: e.start)
        return doc


@Language.factory(TARGETS)
def make_target_spans(nlp, name):  # noqa: ANN001 (spaCy resolves factory arguments by name, unannotated)
    return TargetSpans(target_rules())


def build_pipeline(engine: bool = True) -> Language:
    """A fresh pipeline with every rule loaded (about half a second). ``engine=False`` is the bare
    medspaCy baseline of ``bench.extraction``: medspaCy's own TargetMatcher instead of
    ``TargetSpans`` (same matches, slower) and no misspelling component."""
    import medspacy
    from medspacy.context import ConTextRule
    from medspacy.section_detection import SectionRule

    nlp = medspacy.load(medspacy_enable=["medspacy_tokenizer", "medspacy_target_matcher", "medspacy_context"],
                        load_rules=False)
    nlp.add_pipe(LINE_BOUNDARY, before="medspacy_target_matcher")
    nlp.add_pipe("sentencizer", before="medspacy_target_matcher")
    if engine:
        nlp.add_pipe(TARGETS, before="medspacy_target_matcher")
        nlp.remove_pipe("medspacy_target_matcher")
        nlp.add_pipe(MISSPELLINGS, after=TARGETS)
    else:
        nlp.get_pipe("medspacy_target_matcher").add(target_rules())
    nlp.remove_pipe("medspacy_context")
    context = nlp.add_pipe("medspacy_context", config={"rules": None, "span_attrs": None,
                                                       "terminating_types": TERMINATING_TYPES})
    context.add([_context_rule(ConTextRule, phrase, category, direction, scope)
                 for phrase, category, direction, scope in MODIFIER_RULES])
    if engine:
        quicken(context)  # same scopes and edges, fewer calls (rules/context.py)
        nlp.add_pipe(SECTIONS)
    else:
        sectionizer = nlp.add_pipe("medspacy_sectionizer", config={"rules": None, "span_attrs": None})
        sectionizer.add([SectionRule(literal=category, category=category, pattern=pattern)
                         for category, pattern in section_patterns()])
    return nlp


def section_patterns() -> list[tuple[str, str]]:
    """(category, header pattern) per section category, in the table's order."""
    grouped: dict[str, list[str]] = {}
    for category, header in section_rules():
        grouped.setdefault(category, []).append(header)
    return [(category, _header_pattern(headers)) for category, headers in grouped.items()]


SECTIONS = "vigil_sections"
SECTIONS_KEY = "vigil_sections"


class SectionSpans:
    """medspaCy's Sectionizer for these regular-expression header rules, with the same results
    (header matches snapped to tokens, overlaps pruned by medspaCy's own function, a section runs
    to the next header; sentences are left as they are, as medspaCy's default does), kept as
    ``doc.user_data["vigil_sections"]``: ``(start token, end token, category, start char)``. The
    note text is built once per note, not once per rule."""

    def __init__(self) -> None:
        self.rules = [(category, re.compile(pattern, re.IGNORECASE)) for category, pattern in section_patterns()]

    def __call__(self, doc: Doc) -> Doc:
        from medspacy.common.util import prune_overlapping_matches

        text = note_text(doc)
        matches: list[tuple[int, int, int]] = []
        for index, (_, pattern) in enumerate(self.rules):
            for found in pattern.finditer(text):
                span = doc.char_span(found.start(), found.end(), alignment_mode="expand")
                if span is not None and len(span):
                    matches.append((index, span.start, span.end))
        matches = prune_overlapping_matches(matches)
        sections: list[tuple[int, int, str | None, int]] = []
        if matches and matches[0][1] != 0:
            sections.append((0, matches[0][1], None, 0))
        for i, (index, start, _) in enumerate(matches):
            stop = matches[i + 1][1] if i + 1 < len(matches) else len(doc)
            sections.append((start, stop, self.rules[index][0], doc[start].idx))
        doc.user_data[SECTIONS_KEY] = sections
        return doc


@Language.factory(SECTIONS)
def make_section_spans(nlp, name):  # noqa: ANN001 (spaCy resolves factory arguments by name, unannotated)
    return SectionSpans()


def section_at(doc: Doc, token: int) -> tuple[str | None, int | None]:
    """(category, first character) of the section holding token index ``token``: from the engine's
    ``SectionSpans`` when it ran, else from medspaCy's Sectionizer."""
    sections = doc.user_data.get(SECTIONS_KEY)
    if sections is None:
        found = doc[token]
        span = found._.section_span
        return found._.section_category, (span.start_char if span is not None else None)
    for start, stop, category, start_char in sections:
        if start <= token < stop:
            return category, start_char
    return None, None


def _context_rule(cls, phrase: str, category: str, direction: str, scope: int | None):
    if phrase.startswith("re:"):
        return cls(literal=phrase[3:], category=category, direction=direction, pattern=phrase[3:], max_scope=scope)
    return cls(literal=phrase, category=category, direction=direction, max_scope=scope)


_LOCK = threading.Lock()


@functools.lru_cache(maxsize=1)
def get_pipeline() -> Language:
    """The process-wide pipeline (built on first use)."""
    return build_pipeline()


@functools.lru_cache(maxsize=1)
def _token_cache() -> TokenCache:
    return TokenCache(get_pipeline().tokenizer)


def parse(text: str) -> Doc:
    """Run the shared pipeline; serialised because spaCy matchers are not thread-safe. The note
    text rides along in ``doc.user_data`` (``note_text``) so no component rebuilds it. The
    tokenizer's cache is primed with the note's new chunks first (``tokencache``)."""
    nlp = get_pipeline()
    with _LOCK:
        _token_cache().prime(text)
        doc = nlp.make_doc(text)
        doc.user_data[TEXT_KEY] = text
        return nlp(doc)
