"""The rules engine: medspaCy targets + ConText + sections -> one finding per present category.

Deterministic: the same text always yields the same findings in the same order (rules are
fixed tables, ties are broken by offsets, no sets are iterated into the output).
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

from spacy.tokens import Doc, Span

from services.inference.findings import CATEGORIES, Finding
from services.inference.rules import alternatives, grades, modifiers, sections, vocabulary
from services.inference.rules.attribution import Assertion, Verdict, assertion, judge, note_context
from services.inference.rules.pipeline import parse

RULES_SEMVER = "1.0.0"

#: A sentence longer than this is quoted as the clause around the mention instead.
MAX_QUOTE_CHARS = 320
CONFIDENCE_EXPLICIT = 0.9
CONFIDENCE_CONTEXT = 0.7
_LEADER = re.compile(r"[\s\-*•·>#]*(?:\d{1,2}[.)]\s+)?")
_CLAUSE_BREAK = re.compile(r"[;,]")


def _rules_digest() -> str:
    tables = {
        "targets": vocabulary.target_table(),
        "modifiers": modifiers.MODIFIER_RULES,
        "terminating": modifiers.TERMINATING_TYPES,
        "sections": sections.section_rules(),
        "section_policy": sections.SECTION_POLICY,
        "alternatives": alternatives.ALTERNATIVE_CAUSES,
        "grade": grades.GRADE_PATTERN.pattern,
        "quote": [MAX_QUOTE_CHARS, CONFIDENCE_EXPLICIT, CONFIDENCE_CONTEXT],
    }
    blob = json.dumps(tables, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


@dataclass(frozen=True)
class _Candidate:
    ent: Span
    verdict: Verdict
    grade: int | None


class RulesEngine:
    """``extract(text)`` -> findings; ``candidate_mentions(text)`` -> any category term at all."""

    name = "rules"
    version = f"rules-{RULES_SEMVER}+{_rules_digest()}"

    def __init__(self) -> None:
        self._term_patterns = [vocabulary.category_regex(c) for c in CATEGORIES]

    def candidate_mentions(self, text: str) -> bool:
        return any(pattern.search(text) for pattern in self._term_patterns)

    def extract(self, text: str) -> list[Finding]:
        if not text.strip():
            return []
        doc = parse(text)
        context = note_context(doc)
        mentions = [ent for ent in doc.ents if ent.label_ in CATEGORIES]
        states = {ent.start: assertion(ent) for ent in mentions}
        mention_grades = _assign_grades(doc, [e for e in mentions if not states[e.start].negated])
        candidates: dict[str, list[_Candidate]] = {}
        for ent in mentions:
            state = _heading_state(doc, ent, states[ent.start])
            verdict = judge(ent, context, state)
            if verdict.present:
                candidates.setdefault(ent.label_, []).append(_Candidate(ent, verdict, mention_grades.get(ent.start)))
        findings = [self._finding(text, category, found) for category, found in candidates.items()]
        return sorted(findings, key=lambda f: (f.start, CATEGORIES.index(f.category)))

    def _finding(self, text: str, category: str, found: list[_Candidate]) -> Finding:
        best = min(found, key=lambda c: (not c.verdict.explicit, c.grade is None, c.ent.start_char))
        grade = best.grade
        if grade is None:
            grade = next((c.grade for c in sorted(found, key=lambda c: c.ent.start_char) if c.grade is not None), None)
        start, end = _quote_bounds(text, best.ent)
        return Finding(category=category, grade=grade, start=start, end=end, quote=text[start:end],
                       attribution="immunotherapy" if best.verdict.explicit else "unspecified",
                       confidence=CONFIDENCE_EXPLICIT if best.verdict.explicit else CONFIDENCE_CONTEXT)


def _heading_state(doc: Doc, ent: Span, state: Assertion) -> Assertion:
    """A problem heading ("Colitis:") takes its status from the line that follows it: when that
    line negates the same category ("No further diarrhea.", "Resolved.") the heading is negated."""
    after = doc[ent.end:ent.end + 2]
    if not any(t.text == ":" for t in after) or ent.sent.end >= len(doc):
        return state
    following = _next_sentence(doc, ent.sent)
    if following is None:
        return state
    same = [e for e in following.ents if e.label_ == ent.label_]
    body_negated = any(assertion(e).negated for e in same) or any(
        m.category == modifiers.NEG and m.direction in ("BACKWARD", "BIDIRECTIONAL") for e in same for m in e._.modifiers)
    starts_resolved = following.text.strip().lower().startswith(("resolved", "now resolved", "none", "no longer"))
    if (body_negated or starts_resolved) and not any(modifiers.ONGOING == m.category for e in same for m in e._.modifiers):
        return Assertion(True, state.uncertain, state.hypothetical, state.family, state.historical, False, state.ignored)
    return state


def _next_sentence(doc: Doc, sentence: Span) -> Span | None:
    i = sentence.end
    while i < len(doc) and doc[i].is_space:
        i += 1
    return doc[i].sent if i < len(doc) else None


def _assign_grades(doc: Doc, mentions: list[Span]) -> dict[int, int]:
    """Each grade statement goes to the nearest category mention in its sentence; a sentence
    with mentions but no grade borrows the grade of the next sentence when that one has no
    mention of its own ("... immune-related pneumonitis. G2.")."""
    by_sentence: dict[int, list[Span]] = {}
    for ent in mentions:
        by_sentence.setdefault(ent.sent.start, []).append(ent)
    assigned: dict[int, tuple[int, int]] = {}  # mention start token -> (distance, grade)
    for sent_start, ents in by_sentence.items():
        sentence = ents[0].sent
        stated = grades.find_grades(sentence.text, offset=sentence.start_char)
        if not stated:
            following = _next_sentence(doc, sentence)
            if following is not None and not any(e.label_ in CATEGORIES for e in following.ents):
                stated = [grades.GradeMention(g.grade, sentence.end_char, sentence.end_char)
                          for g in grades.find_grades(following.text, offset=following.start_char)][:1]
        for found in stated:
            def distance(e: Span) -> int:
                if found.end <= e.start_char:
                    return e.start_char - found.end
                if found.start >= e.end_char:
                    return found.start - e.end_char
                return 0
            nearest = min(ents, key=lambda e: (distance(e), e.start_char))
            d = distance(nearest)
            if nearest.start not in assigned or d < assigned[nearest.start][0]:
                assigned[nearest.start] = (d, found.grade)
    return {k: v[1] for k, v in assigned.items()}


def _quote_bounds(text: str, ent: Span) -> tuple[int, int]:
    """The mention's sentence without list markers and surrounding space; its clause if long."""
    sentence = ent.sent
    start, end = sentence.start_char, sentence.end_char
    if end - start > MAX_QUOTE_CHARS:
        left = [m.end() for m in _CLAUSE_BREAK.finditer(text, start, ent.start_char)]
        right = _CLAUSE_BREAK.search(text, ent.end_char, end)
        start = left[-1] if left else start
        end = right.start() if right else end
        if end - start > MAX_QUOTE_CHARS:
            start = max(start, ent.start_char - MAX_QUOTE_CHARS // 2)
            end = min(end, ent.end_char + MAX_QUOTE_CHARS // 2)
    lead = _LEADER.match(text, start, ent.start_char)
    if lead:
        start = lead.end()
    while end > ent.end_char and text[end - 1].isspace():
        end -= 1
    return start, end
