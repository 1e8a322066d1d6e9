"""Scoring an engine against a gold set in the taxonomy's JSON Lines format.

Detection is scored per (note, category): micro and per-category precision, recall and F1,
each with a seeded percentile-bootstrap 95% interval over notes (deterministic for a given
seed). Grade accuracy is over gold labels with a non-null grade that were detected. Evidence
exactness is the fraction of predicted findings whose quote is exactly ``text[start:end]`` and
lies within one sentence that mentions the category (its terms, or a misspelling of one).

A finding below ``REVIEW_BELOW`` confidence is one the engine itself marks uncertain: it goes to
the review lane, is not an alert, and is counted apart (``review``), never as a prediction.

Breakdowns (``by_tag``, ``by_note_type``, ``by_length``) give detection counts and P/R/F1 over
the notes of each trap tag, note type and length bucket; ``errors`` (when asked for) lists
every false positive, false negative and wrong grade with its evidence and the deciding rule.
"""
from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

from services.inference.findings import ALERT_MIN_CONFIDENCE, CATEGORIES, Finding

BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 7
DEFAULT_MIN_F1 = 0.75
DEFAULT_MIN_PRECISION = 0.80


class GoldFileError(ValueError):
    """The gold file is malformed; the message names the line."""


#: Findings with a confidence below this are review-lane findings, not alerts.
REVIEW_BELOW = ALERT_MIN_CONFIDENCE

#: Note length buckets (characters): (name, upper bound exclusive).
LENGTH_BUCKETS: tuple[tuple[str, float], ...] = (
    ("<2k", 2000), ("2-4k", 4000), ("4-8k", 8000), (">=8k", float("inf")))


@dataclass(frozen=True)
class GoldNote:
    id: str
    text: str
    labels: dict[str, int | None]
    note_type: str | None = None
    tags: tuple[str, ...] = ()


def length_bucket(text: str) -> str:
    return next(name for name, upper in LENGTH_BUCKETS if len(text) < upper)


def note_type_key(note_type: str | None) -> str:
    """Note types as written by different authors, folded ("ED note" / "ed note", "h and p" / "H&P")."""
    if not note_type:
        return "unknown"
    key = " ".join(note_type.lower().replace(" and ", " & ").split())
    return {"h & p": "h&p", "portal message": "patient portal message"}.get(key, key)


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
        note_type, tags = row.get("note_type"), row.get("tags", [])
        if note_type is not None and not isinstance(note_type, str):
            raise GoldFileError(f"{where}: 'note_type' must be a string")
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise GoldFileError(f"{where}: 'tags' must be a list of strings")
        seen.add(note_id)
        notes.append(GoldNote(note_id, text, parsed, note_type, tuple(tags)))
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
    from services.inference.rules.spelling import misspellings
    from services.inference.rules.vocabulary import category_regex

    if not finding.matches(text) or not finding.quote.strip():
        return False
    for start, end in sentence_bounds(text):
        if start <= finding.start and finding.end <= end:
            return bool(category_regex(finding.category).search(text, start, end)) or any(
                category == finding.category for _, _, category in misspellings(text[start:end]))
    return False


def rules_sentence_bounds(text: str) -> list[tuple[int, int]]:
    from services.inference.rules.pipeline import parse

    return [(s.start_char, s.end_char) for s in parse(text).sents]


def _breakdown(groups: Mapping[str, list[NoteScore]]) -> dict[str, dict]:
    out = {}
    for key in sorted(groups):
        tp, fp, fn = _totals(groups[key], CATEGORIES)
        out[key] = {"n_notes": len(groups[key]), "tp": tp, "fp": fp, "fn": fn, **prf(tp, fp, fn)}
    return out


#: ``explain(text)`` -> (findings, decisions): decisions are dicts with category, start, end,
#: present, reason (and optionally grade) for every category mention the engine judged.
Explain = Callable[[str], tuple[Sequence[Finding], Sequence[dict]]]


def _deciding(decisions: Sequence[dict], category: str, start: int, end: int) -> dict | None:
    """The kept decision of ``category`` inside the quote [start, end)."""
    inside = [d for d in decisions if d["category"] == category and d["present"] and start <= d["start"] < end]
    return inside[0] if inside else None


def _mention(text: str, decision: dict) -> dict:
    return {"start": decision["start"], "end": decision["end"], "text": text[decision["start"]:decision["end"]],
            "present": decision["present"], "reason": decision["reason"]}


def note_errors(note: GoldNote, findings: Sequence[Finding], decisions: Sequence[dict] | None) -> list[dict]:
    """Every false positive, false negative and wrong grade of one note, with what decided it."""
    by_category = {f.category: f for f in findings}
    errors = []
    for category in CATEGORIES:
        gold, found = category in note.labels, by_category.get(category)
        if gold and found is not None and note.labels[category] in (None, found.grade):
            continue
        if not gold and found is None:
            continue
        kind = "fp" if not gold else "fn" if found is None else "grade"
        entry: dict = {"id": note.id, "category": category, "kind": kind,
                       "expected": {"present": gold, "grade": note.labels.get(category)},
                       "observed": {"present": found is not None, "grade": found.grade if found else None}}
        if found is not None:
            entry["evidence"] = {"start": found.start, "end": found.end, "quote": found.quote}
            decided = _deciding(decisions or (), category, found.start, found.end)
            entry["rule"] = decided["reason"] if decided else None
        else:
            mentions = [_mention(note.text, d) for d in decisions or () if d["category"] == category]
            entry["mentions"] = mentions
            entry["rule"] = mentions[0]["reason"] if mentions else "no_mention"
        errors.append(entry)
    return errors


def summarise(scores: Sequence[NoteScore], *, gates: Gates = Gates(), resamples: int = BOOTSTRAP_RESAMPLES,
              seed: int = BOOTSTRAP_SEED) -> dict:
    """Detection scores of per-note counts: micro and per-category P/R/F1 with bootstrap 95% intervals,
    and the gates on the micro lower bounds (shared by `vigil eval` and `vigil crawl report`)."""
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
    return {"n_notes": len(scores), "tp": tp, "fp": fp, "fn": fn, "micro": micro, "per_category": per_category,
            "gates": gate_report}


def evaluate(notes: Sequence[GoldNote], extract: Callable[[str], Sequence[Finding]], *,
             gates: Gates = Gates(), resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED,
             sentence_bounds: Callable[[str], list[tuple[int, int]]] = rules_sentence_bounds,
             explain: Explain | None = None, with_errors: bool = False,
             prefilter: Callable[[str], bool] | None = None) -> dict:
    """Run ``extract`` (or ``explain``, which also says how each mention was decided) over the
    notes and return the report (JSON-serialisable)."""
    scores: list[NoteScore] = []
    grade_total = grade_right = 0
    evidence_total = evidence_exact = 0
    review = {"findings": 0, "tp": 0, "fp": 0}
    by_tag: dict[str, list[NoteScore]] = {}
    by_type: dict[str, list[NoteScore]] = {}
    by_length: dict[str, list[NoteScore]] = {}
    errors: list[dict] = []
    forwarded = forwarded_positive = positive = forwarded_labels = 0
    for note in notes:
        if prefilter is not None:
            sent = prefilter(note.text)
            forwarded += sent
            positive += bool(note.labels)
            forwarded_positive += sent and bool(note.labels)
            forwarded_labels += len(note.labels) if sent else 0
        decisions: Sequence[dict] | None = None
        if explain is not None:
            produced, decisions = explain(note.text)
        else:
            produced = extract(note.text)
        produced = list(produced)
        findings = [f for f in produced if f.confidence >= REVIEW_BELOW]
        alerted = {f.category for f in findings}
        for f in produced:
            if f.confidence < REVIEW_BELOW and f.category not in alerted:
                review["findings"] += 1
                review["tp" if f.category in note.labels else "fp"] += 1
        score = score_note(note, findings)
        scores.append(score)
        for tag in note.tags or ("(none)",):
            by_tag.setdefault(tag, []).append(score)
        by_type.setdefault(note_type_key(note.note_type), []).append(score)
        by_length.setdefault(length_bucket(note.text), []).append(score)
        if with_errors:
            errors.extend(note_errors(note, findings, decisions))
        by_category = {f.category: f for f in findings}
        for category, gold_grade in note.labels.items():
            if gold_grade is not None and category in by_category:
                grade_total += 1
                grade_right += int(by_category[category].grade == gold_grade)
        for finding in findings:
            evidence_total += 1
            evidence_exact += int(evidence_ok(note.text, finding, sentence_bounds))
    report = {
        **summarise(scores, gates=gates, resamples=resamples, seed=seed),
        "grade_accuracy": grade_right / grade_total if grade_total else None, "grade_n": grade_total,
        "evidence_exact_rate": evidence_exact / evidence_total if evidence_total else None,
        "evidence_n": evidence_total,
        "bootstrap": {"resamples": resamples, "seed": seed},
        "review": review,
        "by_tag": _breakdown(by_tag), "by_note_type": _breakdown(by_type), "by_length": _breakdown(by_length),
    }
    if with_errors:
        report["errors"] = errors
    if prefilter is not None:
        labels = sum(len(n.labels) for n in notes)
        report["prefilter"] = {
            "forwarded": forwarded, "forward_rate": forwarded / len(notes),
            "positive_notes": positive, "recall": forwarded_positive / positive if positive else 1.0,
            "label_recall": forwarded_labels / labels if labels else 1.0,
        }
    return report
