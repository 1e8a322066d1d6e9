"""Scoring math on hand-computed examples, interval sanity, gold-file checking."""
from __future__ import annotations

import json

import pytest

from services.core.config import ConfigError
from services.inference.evaluation import (Gates, GoldFileError, GoldNote, bootstrap_interval, evaluate, load_gold,
                                           prf, score_note)
from services.inference.findings import Finding


def finding(text: str, category: str, quote: str, grade: int | None = None) -> Finding:
    start = text.index(quote)
    return Finding(category, grade, start, start + len(quote), quote, "immunotherapy", 0.9)


def one_sentence_each(text: str) -> list[tuple[int, int]]:
    bounds, start = [], 0
    for i, ch in enumerate(text):
        if ch == ".":
            bounds.append((start, i + 1))
            start = i + 1
    return bounds


NOTES = [
    GoldNote("a", "Immune colitis grade 2. Rash.", {"colitis": 2}),
    GoldNote("b", "Hypothyroidism. Hepatitis grade 3.", {"thyroiditis": None, "hepatitis": 3}),
    GoldNote("c", "Nothing here.", {}),
]
PREDICTIONS = {
    "Immune colitis grade 2. Rash.": [finding(NOTES[0].text, "colitis", "Immune colitis grade 2.", 2),
                                      finding(NOTES[0].text, "dermatitis", "Rash.")],
    "Hypothyroidism. Hepatitis grade 3.": [finding(NOTES[1].text, "hepatitis", "Hepatitis grade 3.", 2)],
    "Nothing here.": [],
}


def test_prf_hand_computed():
    assert prf(2, 1, 1) == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3})
    assert prf(3, 0, 1) == pytest.approx({"precision": 1.0, "recall": 0.75, "f1": 6 / 7})
    assert prf(0, 2, 0)["f1"] == 0.0


def test_evaluate_hand_computed():
    report = evaluate(NOTES, lambda text: PREDICTIONS[text], resamples=200, sentence_bounds=one_sentence_each)
    # tp: colitis(a), hepatitis(b); fp: dermatitis(a); fn: thyroiditis(b)
    assert (report["tp"], report["fp"], report["fn"]) == (2, 1, 1)
    assert report["micro"]["precision"] == pytest.approx(2 / 3)
    assert report["micro"]["recall"] == pytest.approx(2 / 3)
    assert report["per_category"]["colitis"]["f1"] == 1.0
    assert report["per_category"]["thyroiditis"]["recall"] == 0.0
    assert report["per_category"]["dermatitis"]["precision"] == 0.0
    # grade: colitis 2 == 2 right, hepatitis 3 != 2 wrong
    assert report["grade_accuracy"] == 0.5 and report["grade_n"] == 2
    # evidence: all three quotes are exact; "Rash." mentions dermatitis -> all ok
    assert report["evidence_exact_rate"] == 1.0
    assert report["n_notes"] == 3


def test_evidence_rejects_a_quote_whose_sentence_lacks_the_category():
    text = "Hypothyroidism. Hepatitis grade 3."
    wrong = Finding("colitis", None, 0, 15, "Hypothyroidism.", "unspecified", 0.5)
    report = evaluate([GoldNote("x", text, {"colitis": None})], lambda t: [wrong], resamples=100,
                      sentence_bounds=one_sentence_each)
    assert report["evidence_exact_rate"] == 0.0


def test_bootstrap_is_deterministic_and_brackets_the_estimate():
    report1 = evaluate(NOTES * 10, lambda text: PREDICTIONS[text], resamples=300, sentence_bounds=one_sentence_each)
    report2 = evaluate(NOTES * 10, lambda text: PREDICTIONS[text], resamples=300, sentence_bounds=one_sentence_each)
    assert report1 == report2
    lo, hi = report1["micro"]["ci95"]["f1"]
    assert 0.0 <= lo <= report1["micro"]["f1"] <= hi <= 1.0 and lo < hi


def test_perfect_predictions_give_a_degenerate_interval():
    scores = [score_note(n, [finding(n.text, c, n.text) for c in n.labels]) for n in NOTES]
    assert bootstrap_interval(scores, ["colitis", "hepatitis", "thyroiditis"], resamples=100)["f1"] == [1.0, 1.0]


def test_gates_from_env():
    assert Gates.from_env({}) == Gates(0.75, 0.80)
    assert Gates.from_env({"VIGIL_EVAL_MIN_F1": "0.9"}).min_f1 == 0.9
    with pytest.raises(ConfigError, match="VIGIL_EVAL_MIN_PRECISION"):
        Gates.from_env({"VIGIL_EVAL_MIN_PRECISION": "1.5"})


def test_gate_fails_on_lower_bound():
    report = evaluate(NOTES, lambda text: PREDICTIONS[text], resamples=200, sentence_bounds=one_sentence_each)
    assert report["gates"]["passed"] is False and report["gates"]["f1_lower"] < 0.75


@pytest.mark.parametrize("line,message", [
    ("not json", ":2: not valid JSON"),
    ('{"id": "x", "text": "t", "labels": [{"category": "flu", "grade": null}]}', "unknown category 'flu'"),
    ('{"id": "x", "text": "t", "labels": [{"category": "colitis", "grade": 7}]}', "grade must be 1-5"),
    ('{"id": "n1", "text": "t", "labels": []}', "duplicate id 'n1'"),
    ('{"id": "x", "labels": []}', "'text' must be a string"),
])
def test_bad_gold_lines_are_named(tmp_path, line, message):
    path = tmp_path / "gold.jsonl"
    path.write_text(json.dumps({"id": "n1", "text": "ok", "labels": []}) + "\n" + line + "\n")
    with pytest.raises(GoldFileError) as err:
        load_gold(path)
    assert f"{path}:2: " in str(err.value) and message.split(": ")[-1] in str(err.value)


def test_gold_sets_are_well_formed():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "data"
    dev, holdout = load_gold(root / "gold_dev.jsonl"), load_gold(root / "gold_holdout.jsonl")
    assert len(dev) >= 90 and len(holdout) >= 40
    assert not {n.text for n in dev} & {n.text for n in holdout}
    assert sum(len(n.text) >= 2000 for n in dev) >= 3


def tagged_notes() -> list[GoldNote]:
    long_text = "Immune colitis grade 2. " + "Stable. " * 400
    return [
        GoldNote("t1", "Immune colitis grade 2. Rash.", {"colitis": 2}, "ED note", ("grade_format",)),
        GoldNote("t2", "Hypothyroidism. Hepatitis grade 3.", {"thyroiditis": None, "hepatitis": 3}, "ed note",
                 ("multiple_iraes", "grade_format")),
        GoldNote("t3", long_text, {"colitis": 2}, "H and P", ()),
    ]


def tagged_predictions(text: str) -> list[Finding]:
    if text.startswith("Immune colitis grade 2. Rash."):
        return [finding(text, "colitis", "Immune colitis grade 2.", 2), finding(text, "dermatitis", "Rash.")]
    if text.startswith("Hypothyroidism"):
        return [finding(text, "hepatitis", "Hepatitis grade 3.", 2)]
    return [finding(text, "colitis", "Immune colitis grade 2.", 2)]


def test_breakdowns_by_tag_note_type_and_length():
    report = evaluate(tagged_notes(), tagged_predictions, resamples=100, sentence_bounds=one_sentence_each)
    assert report["by_tag"]["grade_format"] == {"n_notes": 2, "tp": 2, "fp": 1, "fn": 1, "precision": 2 / 3,
                                                "recall": 2 / 3, "f1": pytest.approx(2 / 3)}
    assert report["by_tag"]["multiple_iraes"]["fn"] == 1 and report["by_tag"]["(none)"]["n_notes"] == 1
    assert set(report["by_note_type"]) == {"ed note", "h&p"}  # spellings of one type are folded
    assert report["by_note_type"]["ed note"]["n_notes"] == 2
    assert report["by_length"]["<2k"]["n_notes"] == 2 and report["by_length"]["2-4k"]["tp"] == 1
    assert "errors" not in report


def test_errors_list_fp_fn_and_wrong_grade_with_the_deciding_rule():
    def explain(text):
        findings = tagged_predictions(text)
        decisions = [{"category": f.category, "start": f.start, "end": f.start + 5, "present": True,
                      "reason": "qualified"} for f in findings]
        if text.startswith("Hypothyroidism"):
            decisions.append({"category": "thyroiditis", "start": 0, "end": 14, "present": False,
                              "reason": "historical"})
        return findings, decisions

    report = evaluate(tagged_notes(), lambda text: [], resamples=100, sentence_bounds=one_sentence_each,
                      explain=explain, with_errors=True)
    errors = {(e["id"], e["category"]): e for e in report["errors"]}
    assert set(errors) == {("t1", "dermatitis"), ("t2", "thyroiditis"), ("t2", "hepatitis")}
    fp = errors[("t1", "dermatitis")]
    assert fp["kind"] == "fp" and fp["expected"] == {"present": False, "grade": None}
    assert fp["evidence"]["quote"] == "Rash." and fp["rule"] == "qualified"
    fn = errors[("t2", "thyroiditis")]
    assert fn["kind"] == "fn" and fn["rule"] == "historical"
    assert fn["mentions"] == [{"start": 0, "end": 14, "text": "Hypothyroidism", "present": False,
                               "reason": "historical"}]
    grade = errors[("t2", "hepatitis")]
    assert grade["kind"] == "grade" and grade["expected"]["grade"] == 3 and grade["observed"]["grade"] == 2
    json.dumps(report)  # all of it serialisable for --json


def test_review_lane_findings_are_counted_apart_not_as_alerts():
    text = "On nivolumab. Concern for ICI colitis. Rash."
    note = GoldNote("r", text, {"colitis": None})
    unsure = Finding("colitis", None, text.index("Concern"), text.index("Concern") + 24,
                     "Concern for ICI colitis.", "unspecified", 0.4)
    also_unsure = Finding("dermatitis", None, text.index("Rash"), text.index("Rash") + 5, "Rash.", "unspecified", 0.4)
    report = evaluate([note], lambda _: [unsure, also_unsure], resamples=100, sentence_bounds=one_sentence_each)
    assert (report["tp"], report["fp"], report["fn"]) == (0, 0, 1)
    assert report["review"] == {"findings": 2, "tp": 1, "fp": 1}
    assert report["evidence_n"] == 0


def test_gold_file_note_type_and_tags(tmp_path):
    good = tmp_path / "g.jsonl"
    good.write_text(json.dumps({"id": "a", "text": "x", "labels": [], "note_type": "ED note", "tags": ["ros"]}) + "\n")
    [note] = load_gold(good)
    assert note.note_type == "ED note" and note.tags == ("ros",)
    bad = tmp_path / "b.jsonl"
    bad.write_text(json.dumps({"id": "a", "text": "x", "labels": [], "tags": "ros"}) + "\n")
    with pytest.raises(GoldFileError, match="b.jsonl:1: 'tags' must be a list of strings"):
        load_gold(bad)
