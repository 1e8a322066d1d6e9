"""Every figure of the monitor against a known stream and the decision ledger (real broker, real
PostgreSQL): the stream is delivered with duplicates, the worker is stopped and restarted in the
middle with more redeliveries, then a worker with a new consumer group replays it all; every
figure stays exactly the known number, reconciles with the ledger, and `vigil report` (figures,
--explain, the HTML page) shows exactly those numbers for the run's period."""
from __future__ import annotations

import asyncio
import json
import re
from datetime import timedelta

import pytest
from typer.testing import CliRunner

from services.triage import ledger as decisions
from services.core.db import create_pool
from services.monitor import figures
from services.monitor.stats import percentile
from tests.fixtures.monitor_run import known_run, write_ledger
from tests.integration.monitor.conftest import T0

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("monitor-reconcile")]
EVENTS, DUPLICATES = "vigil_monitor_events_total", "vigil_monitor_duplicates_total"


async def _handled(mon, unique: int, deliveries: int):
    events, dups = await mon.metric(EVENTS), await mon.metric(DUPLICATES)
    return (events, dups) if events == unique and events + dups >= deliveries else None


async def test_figures_are_exact_through_duplicates_restarts_and_a_replay_and_match_the_ledger(mon, tmp_path):
    t = mon.tenant
    admin = await create_pool(mon.stack, min_size=1, max_size=1)
    try:
        await decisions.ensure_schema(admin)
    finally:
        await admin.close()
    run = known_run(t, T0 + timedelta(days=40))
    await write_ledger(mon.pools, t, run)
    # an earlier run of the same tenant, a day before: a period must not count it
    earlier = known_run(t, T0 + timedelta(days=39), notes=8, tasks=4, accepted=2, overridden=2)
    await write_ledger(mon.pools, t, earlier)
    streams = ("findings", "actions", "feedback")
    first = {s: earlier.events[s] + run.events[s][: len(run.events[s]) // 2] for s in streams}
    second = {s: run.events[s][len(run.events[s]) // 2:] for s in streams}
    # phase 1: half the run, its first five events of each stream delivered twice
    redelivered_1 = {s: first[s][:5] for s in streams}
    for s in streams:
        await mon.publish(s, first[s] + redelivered_1[s])
    unique_1 = sum(len(first[s]) for s in streams)
    deliveries_1 = unique_1 + sum(len(v) for v in redelivered_1.values())
    async with mon.worker():
        events, dups = await mon.wait(lambda: _handled(mon, unique_1, deliveries_1), timeout=90)
    assert dups == deliveries_1 - unique_1
    # phase 2: the rest, plus redeliveries of events the stopped worker already counted; the same
    # consumer group resumes (whatever it had not committed comes again and is a duplicate)
    redelivered_2 = {s: first[s][-3:] for s in streams}
    for s in streams:
        await mon.publish(s, second[s] + redelivered_2[s])
    unique_2 = sum(len(second[s]) for s in streams)
    async with mon.worker():
        await mon.wait(lambda: _handled(mon, unique_2, unique_2 + 9), timeout=90)
    # phase 3: a new consumer group replays every delivery from the start: nothing is new
    deliveries = deliveries_1 + unique_2 + sum(len(v) for v in redelivered_2.values())
    async with mon.worker(app_id=f"vigil-platform.monitor-replay-{t}"):
        await mon.wait(lambda: _handled(mon, 0, deliveries), timeout=90)
        assert await mon.metric(DUPLICATES) == deliveries

    f = await figures.compute(mon.store, t, run.since, run.until)
    f.reconciliation = figures.reconcile(f, await figures.ledger_rows(mon.pools, t, run.since))
    for name in ("notes", "notes_with_findings", "findings", "decisions", "tasks_written", "accepted", "overridden",
                 "ignored"):
        assert f.count(name) == run.expected[name], name
    for name in ("notes", "notes_with_findings", "decisions", "tasks_written", "accepted", "overridden"):
        assert set(f.figures[name].ids) == run.ids[name], name
    assert f.value("override_rate") == pytest.approx(run.expected["override_rate"])
    assert sorted(f.tta_seconds) == pytest.approx(run.expected["tta_seconds"])
    assert f.value("time_to_alert") == pytest.approx(percentile(run.expected["tta_seconds"], 95))
    assert [c.name for c in f.invariants if not c.holds] == []
    assert f.reconciliation and [(c.name, c.detail) for c in f.reconciliation if not c.holds] == []
    # the windows (drift) were counted once per event too, and the earlier run is only in its own period
    assert await mon.window_sum("notes") == run.expected["notes"] + len(earlier.findings)
    assert await mon.window_sum("decisions:routine-task") + await mon.window_sum("decisions:none") == \
        run.expected["decisions"] + earlier.expected["decisions"]
    whole = await figures.compute(mon.store, t)
    assert whole.count("decisions") == run.expected["decisions"] + earlier.expected["decisions"]
    prior = await figures.compute(mon.store, t, earlier.since, earlier.until)
    assert prior.count("tasks_written") == 4 and prior.count("overridden") == 2

    # `vigil report`: the figures as JSON, --explain, and the HTML page over the run's period
    period = ["--since", run.since.isoformat(), "--until", run.until.isoformat()]
    env = mon.env()
    got = await _vigil(env, "report", "--tenant", t, "--json", *period)
    assert got.exit_code == 0, got.output
    shown = json.loads(got.stdout)
    assert {n: v["value"] for n, v in shown["figures"].items() if n in run.ids} == \
        {n: run.expected[n] for n in run.ids}
    assert all(c["holds"] for c in shown["invariants"] + shown["reconciliation"])
    got = await _vigil(env, "report", "--tenant", t, "--explain", "decisions", *period)
    assert got.exit_code == 0, got.output
    lines = got.stdout.splitlines()
    assert lines[0].startswith(f"decisions = {run.expected['decisions']}: {t}")
    assert {line.split("\t")[0] for line in lines[2:]} == run.ids["decisions"]
    got = await _vigil(env, "report", "--tenant", t, "--explain", "overridden", "--json", *period)
    rows = json.loads(got.stdout)["ids"]
    assert {r["task"] for r in rows} == run.ids["overridden"] and {r["reason"] for r in rows} == {"other-cause",
                                                                                                   "not-present"}
    out = tmp_path / "report"
    got = await _vigil(env, "report", "--tenant", t, "--out", str(out), *period)
    assert got.exit_code == 0, got.output
    html = (out / "index.html").read_text()
    kpi = {k: re.search(rf'id="kpi-{k}"[^>]*>([^<]*)<', html).group(1).strip()
           for k in ("notes", "findings", "decisions", "tasks", "outcomes", "override")}
    assert kpi == {"notes": str(run.expected["notes"]), "findings": str(run.expected["findings"]),
                   "decisions": str(run.expected["decisions"]), "tasks": str(run.expected["tasks_written"]),
                   "outcomes": f"{run.expected['accepted']} / {run.expected['overridden']} / 0", "override": "25%"}
    assert "Every figure reconciles with the decision ledger." in html
    assert ">NO<" not in html
    # bad periods are refused with exit 2
    bad = await _vigil(env, "report", "--tenant", t, "--json", "--since", "yesterday")
    assert bad.exit_code == 2 and "--since" in bad.stderr
    bad = await _vigil(env, "report", "--tenant", t, "--json", "--since", "2026-03-02", "--until", "2026-03-01")
    assert bad.exit_code == 2 and "is not before" in bad.stderr
    bad = await _vigil(env, "report", "--tenant", t, "--explain", "everything")
    assert bad.exit_code == 2 and "expected one of" in bad.stderr


async def _vigil(env, *args):
    from services.cli import app

    return await asyncio.to_thread(CliRunner().invoke, app, list(args), env=env)
