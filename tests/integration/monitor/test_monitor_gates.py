"""`vigil gate` and the promotion check behind `vigil mode set`, run as the real command against the
control service as the manifests start it (its own process, the monitor's gates wired in)."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from dataclasses import dataclass
from datetime import timedelta

import pytest
from typer.testing import CliRunner

from services.core import audit
from services.core.db import create_pool
from services.monitor import facts
from services.monitor.store import utcnow
from tests.fixtures.control import control_process, operator_token
from tests.integration.monitor.conftest import REPO

pytestmark = pytest.mark.integration
GOLD = REPO / "tests" / "data" / "gold_dev.jsonl"
FAST_EVAL = {"VIGIL_MONITOR_EVAL_RESAMPLES": "100"}


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
async def control(mon):
    """The control service in its own process, with the monitor's promotion gates (mode set calls it)."""
    async with control_process(mon.env(), inherit=False) as running:
        mon.control_env = running.env(operator_token(mon.tenant))
        yield running
    assert running.exit_code == 0


async def vigil(mon, *args, **env) -> Ran:
    """The `vigil` command in-process (CliRunner); the gold-set score still runs `vigil eval` as a child."""
    from services.cli import app

    env = {**getattr(mon, "control_env", {}), **env}
    got = await asyncio.to_thread(CliRunner().invoke, app, list(args), env=mon.env(**FAST_EVAL, **env))
    return Ran(got.exit_code, got.stdout, got.stderr)


async def vigil_process(mon, *args, **env) -> subprocess.CompletedProcess:
    """The real `vigil` entry point, in a process of its own."""
    env = {**getattr(mon, "control_env", {}), **env}
    return await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "services.cli", *args], cwd=REPO,
                                   env=mon.env(**FAST_EVAL, **env), capture_output=True, text=True, timeout=240)


async def audit_actions(mon) -> list[tuple[str, dict]]:
    admin = await create_pool(mon.stack, min_size=1, max_size=1)
    try:
        async with admin.acquire() as conn:
            records = await audit.tail(conn, mon.tenant, limit=50)
    finally:
        await admin.close()
    records = sorted(records, key=lambda r: r.chain_seq)
    return [(r.action, json.loads(r.details) if isinstance(r.details, str) else r.details) for r in records]


async def live_tasks(mon, n: int, overridden: int, tta_minutes: float) -> None:
    """``n`` Tasks written in the last days, each acted on; ``overridden`` of them overridden."""
    now = utcnow()
    for i in range(n):
        note_time = now - timedelta(days=3, minutes=i)
        task_id = uuid.uuid4().hex[:12]
        await mon.store.task_written(mon.tenant, facts.TaskWritten(
            task_id, uuid.uuid4().hex, "colitis", "routine-task", True, note_time,
            note_time + timedelta(minutes=tta_minutes)), "rules-1.0.0+test")
        action = "overridden" if i < overridden else "accepted"
        await mon.store.task_action(mon.tenant, facts.TaskAction(task_id, action, "not-present" if action ==
                                                                 "overridden" else None, now - timedelta(days=1)),
                                    "colitis", "rules-1.0.0+test", "not-present" if action == "overridden" else None)


async def test_gate_then_mode_set_refuses_without_a_passed_gate_unless_forced(mon, control):
    t = mon.tenant
    refused = await vigil_process(mon, "mode", "set", "pilot", "--tenant", t)
    assert refused.returncode == 1 and "no gate decision for silent -> pilot" in refused.stderr
    gate = await vigil(mon, "gate", "--tenant", t, "--json")
    assert gate.returncode == 0, gate.stderr
    result = json.loads(gate.stdout)
    assert result["passed"] and (result["from"], result["to"]) == ("silent", "pilot")
    assert {c["name"] for c in result["checks"]} == {"gold-f1", "gold-precision"}
    assert all(c["value"] >= c["threshold"] for c in result["checks"])
    promoted = await vigil(mon, "mode", "set", "pilot", "--tenant", t, "--json")
    assert promoted.returncode == 0, promoted.stderr
    assert json.loads(promoted.stdout)["mode"] == "pilot"
    # pilot -> active needs live data: none yet, so the gate refuses and records why
    gate = await vigil(mon, "gate", "--tenant", t, "--json")
    assert gate.returncode == 1
    result = json.loads(gate.stdout)
    failed = {c["name"] for c in result["checks"] if not c["passed"]}
    assert result["to"] == "active" and failed == {"override-rate", "time-to-alert-p95"}
    refused = await vigil(mon, "mode", "set", "active", "--tenant", t)
    assert refused.returncode == 1 and "the latest gate for active failed" in refused.stderr
    assert "override-rate" in refused.stderr
    no_reason = await vigil(mon, "mode", "set", "active", "--tenant", t, "--force")
    assert no_reason.returncode == 2 and "needs --reason" in no_reason.stderr  # a usage error, caught by the CLI
    forced = await vigil(mon, "mode", "set", "active", "--tenant", t, "--force", "--reason", "CMO sign-off", "--json")
    assert forced.returncode == 0, forced.stderr
    assert json.loads(forced.stdout)["mode"] == "active"
    records = await audit_actions(mon)
    gates = [d for a, d in records if a == "gate.evaluate"]
    assert [(d["from"], d["to"], d["passed"]) for d in gates] == [("silent", "pilot", True), ("pilot", "active", False)]
    sets = [d for a, d in records if a == "mode.set"]
    assert [(d["to"], d["forced"]) for d in sets] == [("pilot", False), ("active", True)]
    assert sets[-1]["reason"] == "CMO sign-off" and "monitor-gate" in sets[-1]["refusals"][0]
    stored = await mon.store.gate_decisions(t)
    assert [(g["to_mode"], g["passed"]) for g in stored] == [("pilot", True), ("active", False)]
    # demotion is never gated
    demoted = await vigil(mon, "mode", "set", "silent", "--tenant", t)
    assert demoted.returncode == 0, demoted.stderr


async def test_active_gate_uses_live_override_rate_and_time_to_alert(mon, control):
    t = mon.tenant
    mon.registry(mode="pilot")
    await live_tasks(mon, 25, overridden=1, tta_minutes=30)
    gate = await vigil(mon, "gate", "--tenant", t, "--to", "active", "--json", VIGIL_GATE_MAX_TTA_P95_S=3600)
    assert gate.returncode == 0, gate.stdout + gate.stderr
    checks = {c["name"]: c for c in json.loads(gate.stdout)["checks"]}
    assert checks["override-rate"]["value"] == pytest.approx(1 / 25)
    assert checks["time-to-alert-p95"]["value"] == pytest.approx(30 * 60)
    assert "30.0 min (gate 60.0 min)" in checks["time-to-alert-p95"]["detail"]
    # --since/--until: the Tasks were written 3 days ago; a period that ended 5 days ago has none
    until = (utcnow() - timedelta(days=5)).date().isoformat()
    gate = await vigil(mon, "gate", "--tenant", t, "--to", "active", "--json", "--until", until,
                       VIGIL_GATE_MAX_TTA_P95_S=3600)
    assert gate.returncode == 1, gate.stdout + gate.stderr
    checks = {c["name"]: c for c in json.loads(gate.stdout)["checks"]}
    assert checks["override-rate"]["value"] is None and "of 0 clinician actions" in checks["override-rate"]["detail"]
    assert not checks["time-to-alert-p95"]["passed"]
    bad = await vigil(mon, "gate", "--tenant", t, "--to", "active", "--since", "last week")
    assert bad.returncode == 2 and "--since" in bad.stderr
    # the passed gate is the newest again
    gate = await vigil(mon, "gate", "--tenant", t, "--to", "active", "--json", VIGIL_GATE_MAX_TTA_P95_S=3600)
    assert gate.returncode == 0
    # stricter thresholds (settings) refuse the same live data, and mode set follows the newest decision
    gate = await vigil(mon, "gate", "--tenant", t, "--to", "active", "--json", VIGIL_GATE_MAX_TTA_P95_S=600,
                       VIGIL_GATE_MAX_OVERRIDE_RATE=0.02)
    assert gate.returncode == 1
    checks = {c["name"]: c for c in json.loads(gate.stdout)["checks"]}
    assert not checks["override-rate"]["passed"] and not checks["time-to-alert-p95"]["passed"]
    assert checks["gold-f1"]["passed"] and checks["gold-precision"]["passed"]
    refused = await vigil(mon, "mode", "set", "active", "--tenant", t)
    assert refused.returncode == 1 and "time-to-alert-p95" in refused.stderr
    # the tenant is already active after a forced promotion: --to active is no longer a promotion
    assert (await vigil(mon, "mode", "set", "active", "--tenant", t, "--force", "--reason", "x")).returncode == 0
    gate = await vigil(mon, "gate", "--tenant", t, "--to", "active")
    assert gate.returncode == 2 and "not a promotion" in gate.stderr


async def test_gate_refuses_a_gold_set_the_engine_fails(mon, control, tmp_path):
    bad = tmp_path / "gold_bad.jsonl"
    lines = GOLD.read_text().splitlines()[:20]
    # every note claims a pneumonitis the notes never mention: precision and F1 collapse
    bad.write_text("\n".join(json.dumps({**json.loads(l), "labels": [{"category": "pneumonitis", "grade": None}]})
                             for l in lines) + "\n")
    gate = await vigil(mon, "gate", "--tenant", mon.tenant, "--json", VIGIL_MONITOR_GOLD=str(bad))
    assert gate.returncode == 1, gate.stderr
    failed = {c["name"] for c in json.loads(gate.stdout)["checks"] if not c["passed"]}
    assert "gold-f1" in failed
    refused = await vigil(mon, "mode", "set", "pilot", "--tenant", mon.tenant)
    assert refused.returncode == 1 and "gold-f1" in refused.stderr
