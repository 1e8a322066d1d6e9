"""Modes and kill switches (PostgreSQL, RLS, audit, cache: the control service's writer and the
readers every stage has), and the `vigil decisions show | rerun` commands against the real stack
and loopback gRPC services. `vigil mode` and `vigil kill` call the control service: their tests
are in tests/integration/control/test_modes_api.py."""
from __future__ import annotations

import asyncio
import hashlib
import json

import pytest
from typer.testing import CliRunner

from services.cli import app as cli
from services.control.modes import NO_GATE, ModeAdmin, PromotionRefused
from services.core import audit
from services.core.modes import ModeStore
from services.triage import app as triage_app

from tests.integration.agents.conftest import FAST_RETRY, FAST_TUNING, TEST_KEY
from tests.integration.agents.notes import COLITIS_G2, doc_ref, finding, findings, patient_with_oncologist


async def test_mode_precedence_cache_and_audit(agents):
    agents.registry(mode="silent")
    store = ModeAdmin(agents.pools, agents.settings.tenants_file, ttl_s=0.3, promotion_checks=())
    assert (await store.state(agents.tenant, "triage")).source == "registry"
    assert await store.get_mode(agents.tenant, "triage") == "silent"
    await store.set_mode(agents.tenant, "pilot", actor="ops:alice", reason="gate passed",
                         pilot_practitioners=["Practitioner/p1"])
    await store.set_mode(agents.tenant, "active", agent="scheduling", actor="ops:alice")
    triage = await store.state(agents.tenant, "triage")
    assert (triage.mode, triage.source, triage.pilot_practitioners) == ("pilot", "tenant", ("Practitioner/p1",))
    assert triage.writes_for("Practitioner/p1") and not triage.writes_for("Practitioner/p2")
    assert (await store.state(agents.tenant, "scheduling")).source == "agent"
    # another process (its own store and cache) sees a kill within the cache TTL
    other = ModeStore(agents.pools, agents.settings.tenants_file, ttl_s=0.3)
    assert not await other.is_killed(agents.tenant, "triage")
    await store.kill(agents.tenant, actor="ops:bob", reason="incident")
    assert not await other.is_killed(agents.tenant, "triage")  # still cached
    await asyncio.sleep(0.35)
    assert await other.is_killed(agents.tenant, "triage") and await other.is_killed(agents.tenant, "scheduling")
    assert not (await other.state(agents.tenant, "scheduling")).writes_for("Practitioner/p1")
    async with agents.pools.tx(agents.tenant, readonly=True) as conn:
        records = await audit.tail(conn, agents.tenant, 10)
    assert [(r.actor, r.action) for r in records] == [("ops:alice", "mode.set"), ("ops:alice", "mode.set"),
                                                      ("ops:bob", "kill.on")]
    assert json.loads(records[0].details)["from"] == "silent" and json.loads(records[0].details)["to"] == "pilot"


async def test_promotion_checks_are_a_constructor_argument(agents):
    agents.registry(mode="silent")
    seen = []

    async def gate(tenant, agent, old, new):
        seen.append((tenant, agent, old, new))
        return "eval gate not passed" if new == "active" else None

    store = ModeAdmin(agents.pools, agents.settings.tenants_file, promotion_checks=[("eval-gate", gate)])
    await store.set_mode(agents.tenant, "pilot", actor="ops")
    with pytest.raises(PromotionRefused, match="eval-gate: eval gate not passed"):
        await store.set_mode(agents.tenant, "active", actor="ops")
    assert await store.get_mode(agents.tenant) == "pilot"
    with pytest.raises(Exception, match="needs a reason"):
        await store.set_mode(agents.tenant, "active", actor="ops", force=True)
    forced = await store.set_mode(agents.tenant, "active", actor="ops", force=True, reason="CMO sign-off")
    assert forced.mode == "active"
    await store.set_mode(agents.tenant, "silent", actor="ops")  # demotion: never checked
    assert seen == [(agents.tenant, None, "silent", "pilot"), (agents.tenant, None, "pilot", "active"),
                    (agents.tenant, None, "pilot", "active")]
    async with agents.pools.tx(agents.tenant, readonly=True) as conn:
        last = (await audit.tail(conn, agents.tenant, 2))[0]
    assert json.loads(last.details)["forced"] is True and json.loads(last.details)["reason"] == "CMO sign-off"


async def test_a_store_without_promotion_checks_refuses_every_promotion(agents):
    agents.registry(mode="silent")
    ungated = ModeAdmin(agents.pools, agents.settings.tenants_file)  # a control process never wired to the gates
    with pytest.raises(PromotionRefused, match="no promotion gate is configured"):
        await ungated.set_mode(agents.tenant, "pilot", actor="ops")
    assert await ungated.get_mode(agents.tenant) == "silent"
    await ungated.kill(agents.tenant, actor="ops", reason="incident")  # kill switches never need a gate
    assert await ungated.is_killed(agents.tenant)
    forced = await ungated.set_mode(agents.tenant, "pilot", actor="ops", force=True, reason="signed off on paper")
    assert forced.mode == "pilot"
    async with agents.pools.tx(agents.tenant, readonly=True) as conn:
        last = (await audit.tail(conn, agents.tenant, 1))[0]
    details = json.loads(last.details)
    assert details["forced"] is True and details["refusals"] == [NO_GATE]


def _json_line(output: str) -> str:
    """The command's JSON line (the in-process gRPC servers under test log to the same stdout)."""
    return next(line for line in output.splitlines() if line.startswith("{"))


def _env(agents, **extra) -> dict:
    s = agents.settings
    return {"VIGIL_TENANTS_FILE": str(s.tenants_file), "VIGIL_POSTGRES_DSN": s.postgres_dsn,
            "VIGIL_REDIS_URL": s.redis_url, "VIGIL_KAFKA_BOOTSTRAP": s.kafka.bootstrap, "VIGIL_ENV": "test",
            "VIGIL_GRPC_TOKEN_KEY": TEST_KEY, **extra}


async def test_decisions_show_and_rerun(agents):
    """Decisions recorded from an older engine's findings; rerun reads the same note version,
    runs the current rules engine and reports the grade change and the finding that is gone."""
    client = agents.ehr.client
    patient, onc = await patient_with_oncologist(client)
    doc = await client.create(doc_ref(patient, COLITIS_G2))
    quote = "grade 2 immune-mediated colitis"
    start = COLITIS_G2.index(quote)
    old = findings(agents.tenant, patient, doc.id, str(doc.version), [
        finding("colitis", 1, quote, start=start), finding("dermatitis", 2, "Oncology clinic", start=0)])
    old.data["noteSha256"] = hashlib.sha256(COLITIS_G2.encode()).hexdigest()
    specs = triage_app.specs(agents.pools, agents.clients, agents.settings, retry=FAST_RETRY, tuning=FAST_TUNING)
    async with agents.host(specs):
        await agents.publish("findings", [old])
        decided = {e.data["category"]: e.data for e in await agents.read("actions", 2)}
    runner = CliRunner()
    env = _env(agents, VIGIL_GRPC_TOOLS_ADDR=f"127.0.0.1:{agents.tools.port}",
               VIGIL_GRPC_INFERENCE_ADDR=f"127.0.0.1:{agents.inference.port}")
    colitis_id = decided["colitis"]["decisionId"]

    shown = await asyncio.to_thread(runner.invoke, cli, ["decisions", "show", colitis_id, "--tenant", agents.tenant,
                                                         "--json"], env=env)
    assert shown.exit_code == 0, shown.output
    row = json.loads(_json_line(shown.output))
    assert row["id"] == colitis_id and row["document_id"] == doc.id and row["grade"] == 1
    assert row["quote"] is None and quote not in shown.output  # PHI only on request
    shown = await asyncio.to_thread(runner.invoke, cli, ["decisions", "show", colitis_id, "--tenant", agents.tenant,
                                                         "--reveal-quote"], env=env)
    assert shown.exit_code == 0 and repr(quote) in shown.output and "routine-task colitis grade 1" in shown.output
    missing = await asyncio.to_thread(runner.invoke, cli, ["decisions", "show", "nope", "--tenant", agents.tenant],
                                      env=env)
    assert missing.exit_code == 1 and "no such decision" in missing.output

    result = await asyncio.to_thread(runner.invoke, cli, ["decisions", "rerun", "--tenant", agents.tenant,
                                                          "--since", "2020-01-01", "--json"], env=env)
    assert result.exit_code == 0, result.output
    report = json.loads(_json_line(result.output))
    by_category = {(c["old"] or c["new"])["category"]: c for c in report["changes"]}
    assert by_category["colitis"]["status"] == "changed"
    assert by_category["colitis"]["old"]["grade"] == 1 and by_category["colitis"]["new"]["grade"] == 2
    assert by_category["dermatitis"]["status"] == "gone" and by_category["dermatitis"]["new"] is None
    assert report["summary"] == {"unchanged": 0, "changed": 1, "gone": 1, "new": 0, "decisions": 2, "errors": 0}
    assert not any(c["noteChanged"] for c in report["changes"])
    text = await asyncio.to_thread(runner.invoke, cli, ["decisions", "rerun", "--tenant", agents.tenant,
                                                        "--since", "2020-01-01"], env=env)
    assert "colitis g1 routine-task -> colitis g2 routine-task" in text.output
    assert "summary: unchanged 0, changed 1, gone 1, new 0, decisions 2, errors 0" in text.output
    bad = await asyncio.to_thread(runner.invoke, cli, ["decisions", "rerun", "--tenant", agents.tenant,
                                                       "--since", "last tuesday"], env=env)
    assert bad.exit_code == 2 and "expected a date" in bad.output
