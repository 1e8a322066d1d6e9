"""The monitor's faust worker against the real broker and PostgreSQL: windows, joins, alerts."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest

from tests.integration.monitor.conftest import (BASE_MIX, DRIFT_ENV, SHIFTED_MIX, T0, VERSION, findings_event,
                                                 notes, task_events)

pytestmark = pytest.mark.integration

async def test_windows_tasks_time_to_alert_and_override_alert(mon):
    t = mon.tenant
    findings = notes(t, T0, 2, 12, BASE_MIX + [None, None])
    # 8 Tasks: TTA 10..80 minutes; 3 accepted, 3 overridden (2 "not-present", 1 free text), 2 never acted on
    groups = []
    for i in range(8):
        action = ("accepted" if i < 3 else "overridden") if i < 6 else None
        reason = None if action != "overridden" else ("not-present" if i < 5 else "Pt said Smith was wrong")
        groups.append(task_events(t, T0 + timedelta(hours=i), "colitis", tta=timedelta(minutes=10 * (i + 1)),
                                  action=action, reason=reason))
    # a later note moves stream time 5 days on: the two open Tasks are now past the 72 h threshold
    late = [findings_event(t, T0 + timedelta(days=5), [])]
    await mon.publish("findings", findings)
    await mon.publish_all(groups)
    await mon.publish("findings", late)
    async with mon.worker(**DRIFT_ENV):
        await mon.wait(lambda: mon.window_sum("notes"), timeout=60)
        await mon.wait(lambda: _ready(mon, len(findings) + 1), timeout=60)
        tasks = await mon.wait(lambda: _tasks_done(mon), timeout=30)
        status, health = await mon.get("/healthz")
        assert status == 200 and json.loads(health)["live"] and json.loads(health)["lag"] == 0
        assert (await mon.get("/readyz"))[0] == 200
        status, body = await mon.get("/metrics")
        assert status == 200
    # tumbling windows: 1 h windows summed back to the published counts
    assert await mon.window_sum("notes") == len(findings) + 1
    assert await mon.window_sum("findings", "colitis") == 10    # 24 notes = 2 x the mix of 12 (5 colitis)
    assert await mon.window_sum("findings", "hepatitis") == 6
    assert await mon.window_sum("grade:3", "hepatitis") == 6
    assert await mon.window_sum("notes_without_findings") == 4 + 1
    assert await mon.window_sum("note_length:1000-1999") == len(findings) + 1
    assert await mon.window_sum("tasks_created", "colitis") == 8
    assert await mon.window_sum("accepted", "colitis") == 3
    assert await mon.window_sum("overridden", "colitis") == 3
    assert await mon.window_sum("override_reason:not-present", "colitis") == 2
    assert await mon.window_sum("override_reason:other", "colitis") == 1   # free text never becomes a label
    async with mon.pools.tx(t, readonly=True) as conn:
        rows = await conn.fetch("SELECT window_start FROM monitor_windows WHERE tenant = $1 AND metric = 'notes'", t)
    assert all(r["window_start"].minute == 0 and r["window_start"].second == 0 for r in rows)  # hour-aligned
    # the decision's model version reached the Task through the stream join
    assert {r["version"] for r in tasks} == {VERSION}
    assert sorted(r["tta_seconds"] for r in tasks) == [600.0 * (i + 1) for i in range(8)]
    assert sum(1 for r in tasks if r["ignored_at"] is not None) == 2
    assert {r["reason"] for r in tasks if r["action"] == "overridden"} == {"not-present", "other"}
    # override rate 3/6 = 50% over >= 5 actions: alert row, metric and log event
    alerts = await mon.store.alerts(t, "override-rate")
    assert {a["dimension"] for a in alerts} >= {"*/*", f"colitis/{VERSION}"}
    # raised once per day, when the rate first crossed 10% with at least 5 actions in the window
    assert all(a["value"] > 0.1 and a["details"]["actions"] >= 5 for a in alerts)
    assert len([a for a in alerts if a["dimension"] == "*/*"]) == 1
    assert f'vigil_monitor_override_rate{{category="*",tenant="{t}",version="*"}} 0.5' in body
    assert f'vigil_monitor_alerts_total{{dimension="*/*",kind="override-rate",tenant="{t}"}} 1.0' in body
    assert f'vigil_monitor_tasks_total{{category="colitis",outcome="ignored",tenant="{t}",version="{VERSION}"}} 2.0' \
        in body
    assert "Smith" not in body
    assert '"event": "monitor.alert"' in mon.log_text() or "monitor.alert" in mon.log_text()


async def _ready(mon, expected_notes):
    return await mon.window_sum("notes") == expected_notes


async def _tasks_done(mon):
    rows = await mon.store.tasks(mon.tenant)
    if len(rows) == 8 and sum(1 for r in rows if r["action"]) == 6 and sum(1 for r in rows if r["ignored_at"]) == 2:
        return rows
    return None


@pytest.mark.parametrize("shifted", [True, False], ids=["shifted", "stable"])
async def test_psi_alert_on_a_shifted_distribution_only(mon, shifted):
    t = mon.tenant
    baseline = notes(t, T0, 7, 10, BASE_MIX + [None, None])
    current_mix = SHIFTED_MIX if shifted else BASE_MIX + [None, None]
    current = notes(t, T0 + timedelta(days=7), 3, 10, current_mix,
                    length=6000 if shifted else 1200, note_type="34117-2" if shifted else "11506-3")
    await mon.publish("findings", baseline + current)
    # count every note before the first sweep: an alert keeps the counts of the sweep that raised it,
    # and the findings' partitions are consumed in no set order
    async with mon.worker(**{**DRIFT_ENV, "VIGIL_MONITOR_DRIFT_INTERVAL_S": 3600}):
        await mon.wait(lambda: _ready(mon, len(baseline) + len(current)), timeout=60)
    assert await mon.store.alerts(t, "psi") == []
    async with mon.worker(**DRIFT_ENV):
        if shifted:
            await mon.wait(lambda: _alert_kinds(mon, 3), timeout=30)
        else:
            status, body = await mon.wait(lambda: _psi_published(mon), timeout=30)
        status, body = await mon.get("/metrics")
    got = await mon.store.alerts(t, "psi")
    if shifted:
        assert {a["dimension"] for a in got} == {"category", "note_length", "note_type"}
        category = next(a for a in got if a["dimension"] == "category")
        assert category["value"] > 0.2 and category["threshold"] == 0.2
        assert category["details"]["baseline_n"] == 70 and category["details"]["current_n"] == 30
        assert f'vigil_monitor_alert_active{{dimension="category",kind="psi",tenant="{t}"}} 1.0' in body
    else:
        assert got == []
        line = next(l for l in body.splitlines() if l.startswith("vigil_monitor_psi{") and "category" in l
                    and t in l)
        assert float(line.rsplit(" ", 1)[1]) < 0.1   # "stable" by the usual rule of thumb; alert only > 0.2


async def _alert_kinds(mon, n):
    return len({a["dimension"] for a in await mon.store.alerts(mon.tenant, "psi")}) >= n


async def _psi_published(mon):
    status, body = await mon.get("/metrics")
    return (status, body) if f'vigil_monitor_psi{{dimension="category",tenant="{mon.tenant}"}}' in body else None
