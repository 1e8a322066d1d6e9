"""Figures, invariants, ledger reconciliation, units and chart axes of the monitor (no servers)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import matplotlib.dates as mdates
import pytest
from matplotlib.figure import Figure

from services.monitor import figures, units
from services.monitor.config import MonitorSettings
from services.monitor.report.data import paragraph
from services.monitor.report.plots import time_axis

T = datetime(2026, 3, 1, tzinfo=timezone.utc)


def note(i: int, n: int = 1) -> dict:
    return {"event_id": f"e{i}", "document": f"doc-{i}/1", "time": T + timedelta(minutes=i), "findings": n,
            "category": "colitis" if n else None, "version": "v"}


def decision(i: int) -> dict:
    return {"event_id": f"d{i}", "decision_id": f"dec-{i}", "document": f"doc-{i}/1", "time": T, "category": "colitis",
            "version": "v", "kind": "routine-task"}


def task(i: int, action: str | None = None, reason: str | None = None, tta: float | None = 30.0,
         ignored: bool = False) -> dict:
    return {"task_id": f"task-{i}", "decision_id": f"dec-{i}", "category": "colitis", "version": "v",
            "kind": "routine-task", "note_time": T, "written_time": T + timedelta(hours=1), "tta_seconds": tta,
            "action": action, "reason": reason, "action_time": T + timedelta(hours=2) if action else None,
            "ignored_at": T + timedelta(days=4) if ignored else None}


def test_durations_use_the_unit_that_fits_and_never_say_zero_minutes():
    assert units.duration(0.42) == "0.42 s"
    assert units.duration(42) == "42 s"
    assert units.duration(150) == "2.5 min"
    assert units.duration(7200) == "2.0 h"
    assert units.duration(200_000) == "2.3 d"
    assert units.duration(None) == "-"
    assert units.duration_unit([0.2, 0.9, 31]) == ("s", 1.0)
    assert units.duration_unit([10, 3000]) == ("min", 60.0)
    assert units.percent(14 / 117) == "12%" and units.percent(0.104) == "10.4%" and units.percent(0) == "0%"


def test_a_time_axis_spans_the_data_not_years():
    ax = Figure().add_subplot(1, 1, 1)
    day = datetime(2026, 3, 1, 9)
    lo, hi = time_axis(ax, [day], timedelta(hours=1))
    left, right = ax.get_xlim()
    assert (right - left) == pytest.approx(1.2 / 24)     # 1.2 hours, in matplotlib's day units
    assert mdates.num2date(left).year == mdates.num2date(right).year == 2026
    lo, hi = time_axis(ax, [datetime(2026, 3, 1), datetime(2026, 3, 5)], timedelta(days=1))
    assert (hi - lo) == timedelta(days=5.2)


def test_figures_ids_and_invariants_hold_on_consistent_rows():
    notes = [note(i, 0 if i == 3 else 1) for i in range(5)]
    tasks = [task(0, "accepted"), task(1, "overridden", "other-cause"), task(2, ignored=True)]
    f = figures.build("t1", T, T + timedelta(days=1), notes, [decision(i) for i in range(4)], tasks)
    assert {n: f.count(n) for n in ("notes", "notes_with_findings", "findings", "decisions", "tasks_written",
                                      "accepted", "overridden", "ignored")} == \
        {"notes": 5, "notes_with_findings": 4, "findings": 4, "decisions": 4, "tasks_written": 3, "accepted": 1,
         "overridden": 1, "ignored": 1}
    assert f.value("override_rate") == 0.5 and f.figures["overridden"].ids == ("task-1",)
    assert f.figures["findings"].ids[0] == "doc-0/1#colitis"
    assert all(c.holds for c in f.invariants)


def test_broken_invariants_name_the_ids_that_break_them():
    # a Task whose decision is outside the period, and more outcomes than Tasks cannot happen together
    # in real data; each check is judged on its own
    f = figures.build("t1", T, T + timedelta(days=1), [note(0)], [], [task(7, "accepted")])
    broken = {c.name: c for c in f.invariants if not c.holds}
    assert set(broken) == {"decisions >= Tasks written"}
    assert broken["decisions >= Tasks written"].ids == ("task-7",)


def test_reconciliation_lists_the_ids_on_one_side_only():
    f = figures.build("t1", T, T + timedelta(days=1), [note(0), note(1)], [decision(0), decision(1)],
                      [task(0, "accepted")])
    ledger = [{"id": "dec-0", "time": T, "suppressed": None, "task_id": "task-0", "written_at": T,
               "episode_action": "open", "clinician_action": "accepted", "action_time": T + timedelta(hours=2),
               "document_id": "doc-0", "document_version": "1"},
              {"id": "dec-9", "time": T, "suppressed": None, "task_id": None, "written_at": None,
               "episode_action": None, "clinician_action": None, "action_time": None,
               "document_id": "doc-9", "document_version": "1"},
              {"id": "dec-8", "time": T, "suppressed": "kill-switch", "task_id": None, "written_at": None,
               "episode_action": None, "clinician_action": None, "action_time": None,
               "document_id": "doc-8", "document_version": "1"}]
    checks = {c.name: c for c in figures.reconcile(f, ledger)}
    assert not checks["decisions: monitor = ledger"].holds
    assert set(checks["decisions: monitor = ledger"].ids) == {"ledger-only:dec-9", "monitor-only:dec-1"}
    assert checks["tasks_written: monitor = ledger"].holds and checks["accepted: monitor = ledger"].holds
    assert checks["ledger notes seen by the monitor"].ids == ("doc-9/1",)
    assert figures.reconcile(f, None) == []


def test_the_summary_paragraph_says_what_a_clinical_lead_needs_in_words():
    ms = MonitorSettings()
    reasons = ["other-cause"] * 9 + ["not-present"] * 3 + ["wrong-grade"] * 2
    tasks = [task(i, "overridden", reasons[i], tta=0.4 + i) for i in range(14)] + \
        [task(100 + i, "accepted", tta=20.0) for i in range(103)]
    notes = [note(i) for i in range(130)]
    decisions = [decision(i) for i in range(14)] + [decision(100 + i) for i in range(103)]
    f = figures.build("northvalley", T, T + timedelta(days=30), notes, decisions, tasks)
    text = paragraph(f, ms)
    assert "Override rate 12% over 30 days, above the 10% gate: 9 of 14 overrides say 'other cause'." in text
    assert "Vigil read 130 notes, found 130 findings on 130 of them, made 117 decisions and wrote 117 Tasks" in text
    assert "median 20 s, 95th percentile 20 s, within the 24.0 h gate" in text
    assert "min" not in text.split("Time from note")[1]
    empty = figures.build("northvalley", T, T + timedelta(hours=5), [], [], [])
    assert paragraph(empty, ms) == ("No notes and no inbox Tasks over 5 hours (2026-03-01 00:00 to 2026-03-01 05:00 "
                                    "UTC): there is nothing to judge yet.")
