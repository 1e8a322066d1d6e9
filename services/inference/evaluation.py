"""Scoring an engine against a gold set in the taxonomy's JSON Lines format.

Detection is scored per (note, category): micro and per-category precision, recall and F1,
each with a seeded percentile-bootstrap 95% interval over notes (deterministic for a given
seed). Grade accuracy is over gold labels with a non-null grade that were detected. Evidence
exactness is the fraction of predicted findings whose quote is exactly ``text[start:end]`` and
lies within one sentence that mentions the category.
"""
from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

from services.inference.findings import CATEGORIES, Finding

BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 7
DEFAULT_MIN_F1 = 0.75
DEFAULT_MIN_PRECISION = 0.80


class GoldFileError(ValueError):
    """The gold file is malformed; the message names the line."""


@dataclass(frozen=True)
class GoldNote:
    id: str
    text: str
    labels: dict[str, int | None]


@dataclass(frozen=True)
class Gates:
    """Minimums on the lower bound of the micro 95% interval."""
    min_f1: float = DEFAULT_MIN_F1
    min_precision: float = DEFAULT_MIN_PRECISION

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Gates":
        source = os.environ if env is None else env
        return cls(min_f1=_fraction(source, "VIGIL_EVAL_MIN_F1", DEFAULT_MIN_F1),
                   min_precision=_fraction(source, "VIGIL_EVAL_MIN_PRECISION", DEFAULT_MIN_PRECISION))


def _fraction(source: Mapping[str, str], name: str, default: float) -> float:
    from services.core.config import ConfigError

    raw = source.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected a number between 0 and 1") from None
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name}={raw!r}: expected a number between 0 and 1")
    return value


def load_gold(path: Path) -> list[GoldNote]:
    """Parse and check a gold file; raises GoldFileError naming the offending line."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise GoldFileError(f"{path}: cannot read ({exc.__class__.__name__})") from None
    notes: list[GoldNote] = []
    seen: set[str] = set()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise GoldFileError(f"{where}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise GoldFileError(f"{where}: expected a JSON object")
        note_id, text, labels = row.get("id"), row.get("text"), row.get("labels")
        if not isinstance(note_id, str) or not note_id:
            raise GoldFileError(f"{where}: 'id' must be a non-empty string")
        if note_id in seen:
            raise GoldFileError(f"{where}: duplicate id {note_id!r}")
        if not isinstance(text, str):
            raise GoldFileError(f"{where}: 'text' must be a string")
        if not isinstance(labels, list):
            raise GoldFileError(f"{where}: 'labels' must be a list")
        parsed: dict[str, int | None] = {}
        for label in labels:
            category = label.get("category") if isinstance(label, dict) else None
            if category not in CATEGORIES:
                raise GoldFileError(f"{where}: unknown category {category!r}")
            if category in parsed:
                raise GoldFileError(f"{where}: category {category!r} listed twice")
            grade = label.get("grade")
            if grade is not None and (not isinstance(grade, int) or isinstance(grade, bool) or not 1 <= grade <= 5):
                raise GoldFileError(f"{where}: grade must be 1-5 or null, got {grade!r}")
            parsed[category] = grade
        seen.add(note_id)
        notes.append(GoldNote(note_id, text, parsed))
    if not notes:
        raise GoldFileError(f"{path}: no notes")
    return notes


@dataclass
class NoteScore:
    """Per-note counts, per category: true positives, false positives, false negatives."""
    tp: dict[str, int] = field(default_factory=dict)
    fp: dict[str, int] = field(default_factory=dict)
    fn: dict[str, int] = field(default_factory=dict)


def score_note(gold: GoldNote, findings: Sequence[Finding]) -> NoteScore:
    predicted = {f.category for f in findings}
    score = NoteScore()
    for category in CATEGORIES:
        in_gold, in_pred = category in gold.labels, category in predicted
        score.tp[category] = int(in_gold and in_pred)
        score.fp[category] = int(in_pred and not in_gold)
        score.fn[category] = int(in_gold and not in_pred)
    return score


def prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    """Precision, recall, F1; an empty denominator counts as 1.0 for P/R (nothing to get wrong)."""
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def _totals(scores: Iterable[NoteScore], categories: Sequence[str]) -> tuple[int, int, int]:
    tp = fp = fn = 0
    for s in scores:
        for c in categories:
            tp += s.tp[c]
            fp += s.fp[c]
            fn += s.fn[c]
    return tp, fp, fn


def bootstrap_interval(scores: Sequence[NoteScore], categories: Sequence[str], *,
                       resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> dict[str, list[float]]:
    """Percentile 95% intervals of P/R/F1, resampling notes with replacement."""
    rng = random.Random(seed)
    n = len(scores)
    samples: dict[str, list[float]] = {"precision": [], "recall": [], "f1": []}
    for _ in range(resamples):
        drawn = [scores[rng.randrange(n)] for _ in range(n)]
        for key, value in prf(*_totals(drawn, categories)).items():
            samples[key].append(value)
    out: dict[str, list[float]] = {}
    for key, values in samples.items():
        values.sort()
        lo = values[int(0.025 * (resamples - 1))]
        hi = values[int(round(0.975 * (resamples - 1)))]
        out[key] = [lo, hi]
    return out


def evidence_ok(text: str, finding: Finding, sentence_bounds: Callable[[str], list[tuple[int, int]]]) -> bool:
    """The quote is exact and lies inside one sentence that mentions the finding's category."""
    from services.inference.rules.vocabulary import category_regex

    if not finding.matches(text) or not finding.quote.strip():
        return False
    for start, end in sentence_bounds(text):
        if start <= finding.start and finding.end <= end:
            return bool(category_regex(finding.category).search(text, start, end))
    return False


def rules_sentence_bounds(text: str) -> list[tuple[int, int]]:
    from services.inference.rules.pipeline import parse

    return [(s.start_char, s.end_char) for s in parse(text).sents]


def evaluate(notes: Sequence[GoldNote], extract: Callable[[str], Sequence[Finding]], *,
             gates: Gates = Gates(), resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED,
             sentence_bounds: Callable[[str], list[tuple[int, int]]] = rules_sentence_bounds) -> dict:
    """Run ``extract`` over the notes and return the report (JSON-serialisable)."""
    scores: list[NoteScore] = []
    grade_total = grade_right = 0
    evidence_total = evidence_exact = 0
    for note in notes:
        findings = list(extract(note.text))
        scores.append(score_note(note, findings))
        by_category = {f.category: f for f in findings}
        for category, gold_grade in note.labels.items():
            if gold_grade is not None and category in by_category:
                grade_total += 1
                grade_right += int(by_category[category].grade == gold_grade)
        for finding in findings:
            evidence_total += 1
            evidence_exact += int(evidence_ok(note.text, finding, sentence_bounds))
    micro = prf(*_totals(scores, CATEGORIES))
    micro["ci95"] = bootstrap_interval(scores, CATEGORIES, resamples=resamples, seed=seed)
    per_category = {}
    for category in CATEGORIES:
        tp, fp, fn = _totals(scores, [category])
        entry = prf(tp, fp, fn)
        entry.update(support=tp + fn, tp=tp, fp=fp, fn=fn,
                     ci95=bootstrap_interval(scores, [category], resamples=resamples, seed=seed))
        per_category[category] = entry
    gate_report = {
        "min_f1": gates.min_f1, "min_precision": gates.min_precision,
        "f1_lower": micro["ci95"]["f1"][0], "precision_lower": micro["ci95"]["precision"][0],
    }
    gate_report["f1_passed"] = gate_report["f1_lower"] >= gates.min_f1
    gate_report["precision_passed"] = gate_report["precision_lower"] >= gates.min_precision
    gate_report["passed"] = gate_report["f1_passed"] and gate_report["precision_passed"]
    tp, fp, fn = _totals(scores, CATEGORIES)
    return {
        "n_notes": len(notes), "tp": tp, "fp": fp, "fn": fn,
        "micro": micro, "per_category": per_category,
        "grade_accuracy": grade_right / grade_total if grade_total else None, "grade_n": grade_total,
        "evidence_exact_rate": evidence_exact / evidence_total if evidence_total else None,
        "evidence_n": evidence_total,
        "bootstrap": {"resamples": resamples, "seed": seed},
        "gates": gate_report,
    }
