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
from services.inference.rules.attribution import Assertion, Verdict, assertion, judge, note_context, text_of
from services.inference.rules.layout import build_layout
from services.inference.rules.pipeline import header_regex, parse, section_at
from services.inference.rules.sentences import sentence_of, sentence_text

RULES_SEMVER = "1.0.0"

#: A sentence longer than this is quoted as the clause around the mention instead.
MAX_QUOTE_CHARS = 320
CONFIDENCE_EXPLICIT = 0.9
CONFIDENCE_CONTEXT = 0.7
#: Below the alert threshold (``evaluation.REVIEW_BELOW`` and the default triage minimum): a
#: finding the engine is not sure of goes to review, not to an alert.
CONFIDENCE_REVIEW = 0.4
#: Verdict reasons that make a kept mention a review-lane finding.
REVIEW_REASONS = ("context_symptom", "open_question")
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
        "quote": [MAX_QUOTE_CHARS, CONFIDENCE_EXPLICIT, CONFIDENCE_CONTEXT, CONFIDENCE_REVIEW],
    }
    blob = json.dumps(tables, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


@dataclass(frozen=True)
class MentionDecision:
    """How one category mention was judged (for ``vigil eval --errors``; holds no note text)."""
    category: str
    start: int
    end: int
    present: bool
    reason: str
    grade: int | None

    def to_dict(self) -> dict:
        return {"category": self.category, "start": self.start, "end": self.end, "present": self.present,
                "reason": self.reason, "grade": self.grade}


@dataclass(frozen=True)
class _Candidate:
    ent: Span
    verdict: Verdict
    grade: int | None
    current_grade: bool = False


class RulesEngine:
    """``extract(text)`` -> findings; ``explain(text)`` -> findings and every mention's decision;
    ``prefilter(text)`` -> whether the hybrid route would send the note to the model;
    ``candidate_mentions(text)`` -> any category term at all."""

    name = "rules"
    version = f"rules-{RULES_SEMVER}+{_rules_digest()}"

    def __init__(self) -> None:
        self._term_patterns = [vocabulary.category_regex(c) for c in CATEGORIES]

    def candidate_mentions(self, text: str) -> bool:
        return any(pattern.search(text) for pattern in self._term_patterns)

    def extract(self, text: str) -> list[Finding]:
        return self.explain(text)[0]

    def prefilter(self, text: str) -> bool:
        from services.inference.prefilter import forwards

        return forwards(self.extract(text))

    def explain(self, text: str) -> tuple[list[Finding], list[MentionDecision]]:
        """The findings, and the decision taken on every category mention (in text order)."""
        if not text.strip():
            return [], []
        doc = parse(text)
        doc.user_data["vigil_text"] = text
        doc.user_data["vigil_ents"] = tuple(doc.ents)
        doc.user_data["vigil_layout"] = build_layout(text, header_regex())
        context = note_context(doc)
        mentions = [ent for ent in doc.user_data["vigil_ents"] if ent.label_ in CATEGORIES]
        states = {ent.start: assertion(ent) for ent in mentions}
        candidates: dict[str, list[_Candidate]] = {}
        decisions: list[MentionDecision] = []
        verdicts = [judge(ent, context, _heading_state(doc, ent, states[ent.start])) for ent in mentions]
        overruled = _overruled_by_assessment(mentions, verdicts)
        verdicts = [Verdict(False, False, "assessment")
                    if v.present and ent.label_ in overruled and not _in_assessment(ent) else v
                    for ent, v in zip(mentions, verdicts)]
        stale = _stale_problem_list(mentions, verdicts)
        verdicts = [Verdict(False, False, "stale_problem_list") if v.present and ent.label_ in stale else v
                    for ent, v in zip(mentions, verdicts)]
        # grades go to the mentions that stand (a rejected mention does not take its sentence's grade)
        mention_grades = _assign_grades(doc, [e for e, v in zip(mentions, verdicts) if v.present])
        for ent, verdict in zip(mentions, verdicts):
            grade, current = mention_grades.get(ent.start, (None, False))
            decisions.append(MentionDecision(ent.label_, ent.start_char, ent.end_char, verdict.present,
                                             verdict.reason, grade))
            if verdict.present:
                candidates.setdefault(ent.label_, []).append(_Candidate(ent, verdict, grade, current))
        for ent, verdict in zip(mentions, verdicts):
            # an open question about an irAE ("concern for ICI colitis") goes to review (rule 11)
            if (ent.label_ not in candidates and verdict.reason in ("uncertain", "in_doubt")
                    and _raised_as_irae(ent, context)):
                candidates.setdefault(f"?{ent.label_}", []).append(
                    _Candidate(ent, Verdict(True, False, "open_question"), None))
        findings = [self._finding(text, category.lstrip("?"), found) for category, found in candidates.items()
                    if not (category.startswith("?") and category[1:] in candidates)]
        return sorted(findings, key=lambda f: (f.start, CATEGORIES.index(f.category))), decisions

    def _finding(self, text: str, category: str, found: list[_Candidate]) -> Finding:
        # a symptom the note grades (CTCAE) is being assessed as a toxicity: an alert
        review = all(c.verdict.reason in REVIEW_REASONS and c.grade is None for c in found)
        best = min(found, key=lambda c: (not c.verdict.explicit, c.verdict.reason in REVIEW_REASONS, c.grade is None,
                                         c.ent.start_char))
        grade = best.grade
        now = [c for c in found if c.current_grade and c.grade is not None]
        if now and not best.current_grade:
            grade = now[0].grade
        if grade is None:
            grade = next((c.grade for c in sorted(found, key=lambda c: c.ent.start_char) if c.grade is not None), None)
        start, end = _quote_bounds(text, best.ent)
        return Finding(category=category, grade=grade, start=start, end=end, quote=text[start:end],
                       attribution="immunotherapy" if best.verdict.explicit else "unspecified",
                       confidence=CONFIDENCE_EXPLICIT if best.verdict.explicit
                       else CONFIDENCE_REVIEW if review else CONFIDENCE_CONTEXT)


#: Sections whose statements are the clinician's conclusion about a problem.
ASSESSMENT_SECTIONS = ("assessment_and_plan", "problem_list")
#: Reasons an assessment gives for a category being absent that overrule the rest of the note.
_CONCLUSIONS = ("negated", "uncertain", "local_alternative", "named_cause", "alternative", "in_doubt", "historical", "non_ici",
                "secondary_ai", "predates_ici")


def _raised_as_irae(ent: Span, context) -> bool:
    """The uncertain mention is raised as an irAE: immune-qualified, or in an attributed item."""
    from services.inference.rules.attribution import scope
    from services.inference.rules.vocabulary import is_qualified

    return is_qualified(ent.text) or scope(ent) in context.attributed_sentences


def _in_assessment(ent: Span) -> bool:
    return (section_at(ent.doc, ent.start)[0] or "") in ASSESSMENT_SECTIONS


def _overruled_by_assessment(mentions: list[Span], verdicts: list[Verdict]) -> set[str]:
    """Categories the assessment concludes are absent (it mentions them, never as present, and at
    least once rejects them: resolved, ruled out, another cause, an open question). Mentions of
    those categories elsewhere in the note (HPI, exam, labs) do not make them present."""
    concluded: dict[str, bool] = {}
    for ent, verdict in zip(mentions, verdicts):
        if not _in_assessment(ent):
            continue
        if verdict.present:
            concluded[ent.label_] = False
        elif verdict.reason in _CONCLUSIONS:
            concluded.setdefault(ent.label_, True)
    return {category for category, absent in concluded.items() if absent}


_RESOLVED_WORD = re.compile(r"\bresol(?:ved|ution)\b", re.IGNORECASE)


def _stale_problem_list(mentions: list[Span], verdicts: list[Verdict]) -> set[str]:
    """Categories present only as problem-list entries while the note says elsewhere that the same
    condition resolved ("PROBLEM LIST: Immune-mediated colitis" / "HPI: her colitis ... resolved
    completely a year ago"): a problem list is carried forward and lags behind the note."""
    stale = set()
    for category in {ent.label_ for ent in mentions}:
        present = [ent for ent, v in zip(mentions, verdicts) if ent.label_ == category and v.present]
        resolved = [ent for ent, v in zip(mentions, verdicts) if ent.label_ == category and not v.present
                    and v.reason == "negated" and _RESOLVED_WORD.search(sentence_text(ent))]
        if present and resolved and all((section_at(e.doc, e.start)[0] or "") == "problem_list" for e in present) \
                and not any((section_at(e.doc, e.start)[0] or "") == "problem_list" for e in resolved):
            stale.add(category)
    return stale


def _heading_state(doc: Doc, ent: Span, state: Assertion) -> Assertion:
    """A problem heading ("Colitis:") takes its status from the line that follows it: when that
    line negates the same category ("No further diarrhea.", "Resolved.") the heading is negated."""
    after = doc[ent.end:ent.end + 2]
    if not any(t.text == ":" for t in after) or sentence_of(ent).end >= len(doc):
        return state
    text = text_of(doc)
    if _NORMAL_AFTER_HEADING.match(text, ent.end_char, sentence_of(ent).end_char):  # "Hepatotoxicity: baseline LFTs normal."
        return Assertion(True, state.uncertain, state.hypothetical, state.family, state.historical, False, state.ignored)
    following = _next_sentence(doc, sentence_of(ent))
    if following is None:
        return state
    same = [e for e in following.ents if e.label_ == ent.label_]
    body_negated = any(assertion(e).negated for e in same) or any(
        m.category == modifiers.NEG and m.direction in ("BACKWARD", "BIDIRECTIONAL") for e in same for m in e._.modifiers)
    starts_resolved = sentence_text(following).strip().lower().startswith(("resolved", "now resolved", "none", "no longer"))
    if (body_negated or starts_resolved) and not any(modifiers.ONGOING == m.category for e in same for m in e._.modifiers):
        return Assertion(True, state.uncertain, state.hypothetical, state.family, state.historical, False, state.ignored)
    return state


#: A heading whose own line says there is nothing to report.
_NORMAL_AFTER_HEADING = re.compile(
    r"[ \t]*:[ \t]*(?:[\w/-]+[ \t]+){0,3}?(?:normal|wnl|within\s+normal\s+limits|none|negative|unremarkable|n/?a|nl)\b"
    r"[^;\n]{0,20}$", re.IGNORECASE)


def _next_sentence(doc: Doc, sentence: Span) -> Span | None:
    i = sentence.end
    while i < len(doc) and doc[i].is_space:
        i += 1
    return sentence_of(doc[i]) if i < len(doc) else None


def _assign_grades(doc: Doc, mentions: list[Span]) -> dict[int, tuple[int, bool]]:
    """Each grade statement goes to the nearest category mention in its sentence; a sentence
    with mentions but no grade borrows the grade of the next sentences (up to two, on its line
    or item) while they have no mention of their own ("... immune-related pneumonitis. G2.").
    When a sentence states a current grade ("now G1") its earlier grades ("initially G3") do not
    count. Returns mention start token -> (grade, stated as current)."""
    by_sentence: dict[int, list[Span]] = {}
    for ent in mentions:
        by_sentence.setdefault(sentence_of(ent).start, []).append(ent)
    assigned: dict[int, tuple[int, int, bool]] = {}  # mention start token -> (distance, grade, current)
    for sent_start, ents in by_sentence.items():
        sentence = sentence_of(ents[0])
        stated = grades.find_grades(sentence_text(sentence), offset=sentence.start_char)
        if not stated:
            following = sentence
            for _ in range(2):
                following = _next_sentence(doc, following)
                if following is None or any(e.label_ in CATEGORIES for e in following.ents) \
                        or "\n\n" in text_of(doc)[sentence.end_char:following.start_char]:
                    break
                borrowed = grades.find_grades(sentence_text(following), offset=following.start_char)
                if borrowed:
                    stated = [grades.GradeMention(g.grade, sentence.end_char, sentence.end_char, g.when)
                              for g in borrowed][:1]
                    break
        if any(g.when == "current" for g in stated):
            stated = [g for g in stated if g.when == "current"]
        elif any(g.when != "earlier" for g in stated):
            stated = [g for g in stated if g.when != "earlier"]
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
                assigned[nearest.start] = (d, found.grade, found.when == "current")
    return {k: (v[1], v[2]) for k, v in assigned.items()}


def _quote_bounds(text: str, ent: Span) -> tuple[int, int]:
    """The mention's sentence without list markers and surrounding space; its clause if long."""
    sentence = sentence_of(ent)
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
