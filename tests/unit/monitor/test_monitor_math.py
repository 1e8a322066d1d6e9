"""PSI, percentiles, bins and what one event counts, against hand-computed values."""
from __future__ import annotations

import math

import pytest

from services.core.config import ConfigError
from services.monitor import facts
from services.monitor.config import MonitorSettings
from services.monitor.stats import note_length_bin, percentile, psi, rate, shares


def test_psi_hand_computed():
    # baseline shares 0.5/0.3/0.2, current 0.3/0.3/0.4:
    # (0.3-0.5) ln(0.3/0.5) + 0 + (0.4-0.2) ln(0.4/0.2) = 0.2*0.510826 + 0.2*0.693147 = 0.240795
    got = psi({"a": 50, "b": 30, "c": 20}, {"a": 30, "b": 30, "c": 40})
    assert got == pytest.approx(0.2 * math.log(5 / 3) + 0.2 * math.log(2), abs=1e-12)
    assert got == pytest.approx(0.240795, abs=1e-6)


def test_psi_identical_shares_is_zero_and_counts_scale_free():
    assert psi({"a": 5, "b": 5}, {"a": 500, "b": 500}) == 0.0
    assert psi({"a": 1, "b": 3}, {"a": 10, "b": 30}) == pytest.approx(0.0, abs=1e-15)


def test_psi_empty_bin_uses_the_floor():
    # expected {a: 1.0, b: 0}, actual {a: 0.5, b: 0.5}; b's expected share floored to 1e-4:
    # (0.5-1) ln(0.5/1) + (0.5-1e-4) ln(0.5/1e-4) = 0.346574 + 0.4999*8.517193 = 0.346574 + 4.257744 = 4.604318
    got = psi({"a": 10}, {"a": 5, "b": 5})
    want = (0.5 - 1) * math.log(0.5) + (0.5 - 1e-4) * math.log(0.5 / 1e-4)
    assert got == pytest.approx(want, abs=1e-12)
    assert got == pytest.approx(4.604318, abs=1e-6)


def test_psi_is_symmetric_in_this_form_and_zero_for_nothing():
    a, b = {"x": 7, "y": 3}, {"x": 4, "y": 6}
    assert psi(a, b) == pytest.approx(psi(b, a))
    assert psi({}, {}) == 0.0


def test_percentile_linear_interpolation():
    xs = [10, 20, 30, 40]
    # rank = p/100 * (n-1): p50 -> 1.5 -> 20 + 0.5*10 = 25; p95 -> 2.85 -> 30 + 0.85*10 = 38.5
    assert percentile(xs, 50) == 25.0
    assert percentile(xs, 95) == pytest.approx(38.5)
    assert percentile([40, 10, 30, 20], 0) == 10 and percentile(xs, 100) == 40
    assert percentile([7], 95) == 7.0
    assert percentile([], 50) is None
    # matches NumPy's default method on a longer series
    import numpy as np
    series = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9]
    for p in (5, 25, 50, 75, 95):
        assert percentile(series, p) == pytest.approx(float(np.percentile(series, p)))
    with pytest.raises(ValueError):
        percentile(xs, 101)


def test_rate_shares_and_bins():
    assert rate(1, 4) == 0.25 and rate(3, 0) is None
    assert shares({"a": 1, "b": 3}) == {"a": 0.25, "b": 0.75}
    assert shares({"a": 0}) == {"a": 0.0}
    assert [note_length_bin(n) for n in (0, 499, 500, 1999, 2000, 7999, 8000, 10**6)] == \
        ["0-499", "0-499", "500-999", "1000-1999", "2000-3999", "4000-7999", "8000+", "8000+"]


def test_findings_counts_and_labels_never_carry_free_text():
    data = {"engineVersion": "rules-1.0.0+abc", "reviewRequired": True, "noteLength": 2500, "noteType": "11506-3",
            "findings": [{"category": "colitis", "grade": 2}, {"category": "Mr Smith has colitis", "grade": None}]}
    got = {(c.metric, c.category, c.version) for c in facts.findings_counts(data)}
    v = "rules-1.0.0+abc"
    assert got == {("notes", "*", v), ("review_required", "*", v), ("note_length:2000-3999", "*", v),
                   ("note_type:11506-3", "*", v), ("findings", "colitis", v), ("grade:2", "colitis", v),
                   ("findings", "other", v), ("grade:none", "other", v)}
    empty = {c.metric for c in facts.findings_counts({"engineVersion": "x", "findings": []})}
    assert empty == {"notes", "notes_without_findings"}


def test_task_facts_time_to_alert_and_actions():
    written = facts.task_written({"decisionId": "d1", "category": "colitis", "kind": "urgent-task",
                                  "action": "created", "task": {"id": "t1", "versionId": "1"},
                                  "noteTime": "2026-01-01T10:00:00Z", "writtenTime": "2026-01-01T10:45:30+00:00"})
    assert written.created and written.tta_seconds == 45 * 60 + 30
    no_note_time = facts.task_written({"decisionId": "d1", "category": "colitis", "action": "created",
                                       "task": {"id": "t1"}, "noteTime": None,
                                       "writtenTime": "2026-01-01T10:45:30Z"})
    assert no_note_time.tta_seconds is None and no_note_time.version is None  # an older event: looked up
    versioned = facts.task_written({"decisionId": "d1", "category": "colitis", "action": "created",
                                    "task": {"id": "t1"}, "writtenTime": "2026-01-01T10:45:30Z",
                                    "engineVersion": "rules-2026.11"})
    assert written.version is None and versioned.version == "rules-2026.11"
    base = {"task": {"id": "t1", "versionId": "2"}, "lastUpdated": "2026-01-02T00:00:00Z", "note": None}
    assert facts.task_action({**base, "status": "completed", "statusReason": None}).action == "accepted"
    over = facts.task_action({**base, "status": "rejected", "statusReason": "wrong-grade"})
    assert over.action == "overridden" and over.reason == "wrong-grade"
    assert facts.task_action({**base, "status": "requested", "statusReason": None}) is None
    ms = MonitorSettings()
    assert ms.reason_label("wrong-grade") == "wrong-grade"
    assert ms.reason_label("the patient John said no") == "other" and ms.reason_label(None) == "none"


def test_settings_fail_fast_and_read_thresholds():
    ms = MonitorSettings.from_env({"VIGIL_MONITOR_PSI_MAX": "0.25", "VIGIL_GATE_MAX_TTA_P95_S": "3600",
                                   "VIGIL_MONITOR_TENANTS": "alpha,beta"})
    assert ms.psi_max == 0.25 and ms.gate_max_tta_p95_s == 3600 and ms.tenants == ("alpha", "beta")
    assert MonitorSettings.from_env({}) == MonitorSettings()
    for bad in ({"VIGIL_MONITOR_PSI_MAX": "high"}, {"VIGIL_MONITOR_OVERRIDE_RATE_MAX": "1.5"},
                {"VIGIL_MONITOR_TENANTS": "Bad_Tenant"}, {"VIGIL_MONITOR_WINDOW_S": "0"}):
        with pytest.raises(ConfigError) as exc:
            MonitorSettings.from_env(bad)
        assert next(iter(bad)) in str(exc.value)
