"""`vigil crawl report` scoring against a hand computation on a small labelled set, the gate, and the page."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from services.commands import crawl, crawl_html
from services.ingest.batch.job import JobRow
from services.inference.evaluation import Gates, GoldNote

UTC = timezone.utc


def gold() -> list[GoldNote]:
    return [GoldNote("g1", "t", {"colitis": 2}), GoldNote("g2", "t", {"hepatitis": 2, "pneumonitis": None}),
            GoldNote("g3", "t", {}), GoldNote("g4", "t", {"colitis": 3}), GoldNote("g5", "t", {"colitis": 1})]


def decision(doc: str, category: str, kind: str = "routine-task", **kw) -> dict:
    return {"document_id": doc, "category": category, "kind": kind, "suppressed": None, "mode": "silent",
            "write": False, "written_refs": [], "time": datetime(2026, 12, 6, 10, 0, tzinfo=UTC), **kw}


#: document id -> source identifier value; g5 was not stored by the run.
DOCS = {"d1": "g1", "d2": "g2", "d3": "g3", "d4": "g4"}
DECISIONS = [
    decision("d1", "colitis", "urgent-task"),
    decision("d2", "hepatitis"),
    decision("d3", "colitis"),                    # a false alarm
    decision("d4", "colitis", "none"),            # review lane, not an alert: g4's colitis is missed
    decision("d4", "dermatitis", "review-task"),  # not an alert either
    decision("d9", "colitis"),                    # a document of another run: ignored
]


def test_scores_match_the_hand_computation():
    # by hand: g1 colitis tp; g2 hepatitis tp, pneumonitis fn; g3 colitis fp; g4 colitis fn; g5 not in the run
    tp, fp, fn = 2, 1, 2
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    f1 = 2 * precision * recall / (precision + recall)
    predicted = crawl.predictions(DECISIONS, DOCS)
    assert predicted == {"g1": {"colitis"}, "g2": {"hepatitis"}, "g3": {"colitis"}}
    report = crawl.score_run(gold(), predicted, set(DOCS.values()), gates=Gates(), resamples=200)
    assert (report["tp"], report["fp"], report["fn"], report["n_notes"]) == (tp, fp, fn, 4)
    assert report["missing"] == ["g5"]
    assert report["micro"]["precision"] == pytest.approx(2 / 3)
    assert report["micro"]["recall"] == pytest.approx(0.5)
    assert report["micro"]["f1"] == pytest.approx(f1) == pytest.approx(4 / 7)
    colitis = report["per_category"]["colitis"]
    assert (colitis["tp"], colitis["fp"], colitis["fn"], colitis["precision"], colitis["recall"]) == (1, 1, 1, 0.5, 0.5)
    for name in ("precision", "recall", "f1"):
        lo, hi = report["micro"]["ci95"][name]
        assert 0.0 <= lo <= report["micro"][name] <= hi <= 1.0
    # the gate is `vigil eval`'s: lower bounds against the minimums
    assert report["gates"]["passed"] is False
    lenient = crawl.score_run(gold(), predicted, set(DOCS.values()), gates=Gates(min_f1=0.0, min_precision=0.0),
                              resamples=200)
    assert lenient["gates"]["passed"] is True


def test_no_cohort_note_in_the_run_is_an_error():
    with pytest.raises(crawl.CrawlReportError, match="none of the 5 cohort notes"):
        crawl.score_run(gold(), {}, {"other"}, gates=Gates(), resamples=100)


def test_report_page_has_the_three_plots_and_no_text(tmp_path):
    row = JobRow("r1", "jsonl", "jsonl:n.jsonl", "5", 5, 5, 4, 4, 1, 0, "done", None,
                 datetime(2026, 12, 6, 9, 0, tzinfo=UTC), datetime(2026, 12, 6, 9, 1, tzinfo=UTC), None)

    class Doc:
        def __init__(self, id, value, month):
            self.id, self.identifier_value = id, value
            self.note_time = datetime(2025, month, 3, tzinfo=UTC)
    data = {"job": row, "documents": [Doc(d, v, i + 1) for i, (d, v) in enumerate(DOCS.items())],
            "decisions": DECISIONS,
            "progress": [(datetime(2026, 12, 6, 9, 0, s, tzinfo=UTC), 2 * s) for s in range(4)]}
    report = crawl.build_report(data, gold(), gates=Gates(), resamples=100)
    report["tenant"] = "tcrawl"
    assert report["per_month"] == {"2025-01": {"colitis": 1}, "2025-02": {"hepatitis": 1}, "2025-03": {"colitis": 1}}
    assert [c["name"] for c in report["gate"]["checks"]] == ["gold-f1", "gold-precision"]
    assert report["gate"]["passed"] is False
    page = crawl_html.write(report, tmp_path)
    body = page.read_text()
    for png in ("rate.png", "per-month.png", "gate.png"):
        assert (tmp_path / png).stat().st_size > 1000 and png in body
    assert "precision" in body and "FAILED" in body

