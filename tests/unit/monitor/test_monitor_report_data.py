"""The report's derived series (no servers): daily PSI against the baseline period, alert grouping."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from services.monitor.config import MonitorSettings
from services.monitor.report.data import alert_groups, psi_series
from services.monitor.stats import psi


def test_psi_series_compares_trailing_days_with_the_first_baseline_days():
    ms = MonitorSettings(baseline_days=2, current_days=1, drift_min_count=10)
    d0 = date(2026, 1, 1)
    days = [d0 + timedelta(days=i) for i in range(4)]
    rows = []
    for i, (a, b) in enumerate([(30, 10), (30, 10), (30, 10), (10, 30)]):
        rows += [{"day": days[i], "metric": "findings", "category": "colitis", "v": a},
                 {"day": days[i], "metric": "findings", "category": "rash", "v": b}]
    got = psi_series(rows, ms, days)
    assert set(got) == {"category"}          # no note_length / note_type data: no series
    assert list(got["category"]) == days[2:]  # days inside the baseline period have no PSI
    assert got["category"][days[2]] == pytest.approx(0.0)
    assert got["category"][days[3]] == pytest.approx(psi({"colitis": 60, "rash": 20}, {"colitis": 10, "rash": 30}))
    assert got["category"][days[3]] > 0.2


def test_alert_groups_count_first_last_and_worst():
    t = datetime(2026, 1, 1, tzinfo=timezone.utc)
    alerts = [{"kind": "psi", "dimension": "category", "value": 0.3, "threshold": 0.2, "time": t, "period_end": t},
              {"kind": "psi", "dimension": "category", "value": 0.9, "threshold": 0.2, "time": t,
               "period_end": t + timedelta(days=3)},
              {"kind": "override-rate", "dimension": "*/*", "value": 0.2, "threshold": 0.1, "time": t,
               "period_end": None}]
    got = alert_groups(alerts)
    assert [(g["kind"], g["dimension"], g["count"]) for g in got] == [("override-rate", "*/*", 1), ("psi", "category", 2)]
    psi_group = got[1]
    assert (psi_group["first"], psi_group["last"], psi_group["max"]) == (t.date(), (t + timedelta(days=3)).date(), 0.9)
