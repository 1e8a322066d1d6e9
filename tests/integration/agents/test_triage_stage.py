"""The triage stage on the real broker, PostgreSQL (tenant roles, RLS), EHR sandbox (CareTeam
routing through tools over loopback gRPC)."""
from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg

from services.core.crypto import Keyring
from services.triage.ledger import DecisionLedger
from services.core.events import Event
from services.control.modes import ModeAdmin
from services.triage import app as triage_app

from tests.fixtures.kafka import wait_idle
from tests.integration.agents.conftest import FAST_RETRY, FAST_TUNING
from tests.integration.agents.notes import finding, findings, patient_with_oncologist


def triage_specs(agents):
    return triage_app.specs(agents.pools, agents.clients, agents.settings, retry=FAST_RETRY, tuning=FAST_TUNING)


def task_written(tenant: str, decision: dict, task_id: str) -> Event:
    """What writeback emits once it wrote (and read back) a decision's Task."""
    return Event.new("vigil.writeback.task-written", source="/test", tenant=tenant, key=decision["patient"],
                     id=str(uuid.uuid4()), data={
                         "decisionId": decision["decisionId"], "patient": decision["patient"],
                         "kind": decision["kind"], "category": decision["category"], "grade": decision["grade"],
                         "action": "created", "task": {"id": task_id, "versionId": "1"}, "owner": decision["owner"],
                         "noteTime": None, "writtenTime": "2026-03-03T08:00:00+00:00",
                         "refs": [f"Task/{task_id}/_history/1"]})


async def _row(agents, decision_id: str, column: str):
    return (await ledger(agents).get(agents.tenant, decision_id))[column]


async def wait_for(predicate, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = await predicate()
        if got:
            return got
        await asyncio.sleep(0.2)
    raise AssertionError("condition not reached")


def ledger(agents) -> DecisionLedger:
    return DecisionLedger(agents.pools, Keyring(agents.pools, agents.pools.secrets))


async def test_grade3_urgent_grade2_routine_with_followup(agents, stack):
    agents.registry(followup_within_days=5)
    p1, onc1 = await patient_with_oncologist(agents.ehr.client)
    p2, onc2 = await patient_with_oncologist(agents.ehr.client)
    quote = "grade 3 immune-mediated colitis"
    await agents.publish("findings", [
        findings(agents.tenant, p1, "doc-a", "1", [finding("colitis", 3, quote, start=40)]),
        findings(agents.tenant, p2, "doc-b", "1", [finding("hepatitis", 2, "G2 transaminitis", start=5),
                                                   finding("hepatitis", 1, "mild ALT rise", start=90)])])
    async with agents.host(triage_specs(agents)):
        wire = await agents.read("actions", 2, settle=1.5)
        followups = await agents.read("scheduling", 1, settle=0.5)
    assert all("quote" not in e.data["finding"] and e.data["finding"]["quoteSealed"] for e in wire)
    actions = await agents.opened(wire)
    by_patient = {e.data["patient"]: e.data for e in actions}
    assert len(actions) == 2
    urgent, routine = by_patient[p1], by_patient[p2]
    assert urgent["kind"] == "urgent-task" and urgent["grade"] == 3 and urgent["owner"] == onc1
    assert urgent["finding"] == {"start": 40, "end": 40 + len(quote), "quote": quote, "grade": 3, "category": "colitis"}
    assert urgent["mode"] == "active" and urgent["write"] is True and urgent["episodeAction"] == "open"
    assert urgent["withinDays"] is None
    assert routine["kind"] == "routine-task" and routine["grade"] == 2 and routine["owner"] == onc2
    assert routine["finding"]["quote"] == "G2 transaminitis"  # highest grade of the category is the evidence
    assert [f.data for f in followups] == [{"decisionId": routine["decisionId"], "patient": p2,
                                            "category": "hepatitis", "grade": 2, "withinDays": 5, "owner": onc2}]
    # the ledger: inputs, engine, output; the quote only encrypted at rest
    row = await ledger(agents).get(agents.tenant, urgent["decisionId"])
    assert row["document_id"] == "doc-a" and row["engine_version"] == "rules-test-1"
    assert row["note_sha256"] == "0" * 64 and row["kind"] == "urgent-task" and row["quote"] == quote
    conn = await asyncpg.connect(stack.postgres_dsn)
    try:
        raw = await conn.fetchrow("SELECT quote, output::text AS output FROM vigil_decisions WHERE tenant = $1 "
                                  "AND id = $2", agents.tenant, urgent["decisionId"])
    finally:
        await conn.close()
    assert quote.encode() not in bytes(raw["quote"]) and quote not in raw["output"]


async def test_second_note_updates_the_open_episode_until_the_task_closes(agents):
    patient, onc = await patient_with_oncologist(agents.ehr.client)
    first = findings(agents.tenant, patient, "doc-1", "1", [finding("colitis", 2, "grade 2 colitis")], n=1)
    second = findings(agents.tenant, patient, "doc-2", "1", [finding("colitis", 3, "now grade 3 colitis")], n=2)
    third = findings(agents.tenant, patient, "doc-3", "1", [finding("colitis", 1, "mild colitis again")], n=3)
    async with agents.host(triage_specs(agents)):
        await agents.publish("findings", [first])
        [d1] = [e.data for e in await agents.read("actions", 1)]
        await agents.publish("findings", [second])
        d2 = [e.data for e in await agents.read("actions", 2)][1]
        assert d1["episodeAction"] == "open" and d2["episodeAction"] == "update"
        assert d2["episodeKey"] == d1["episodeKey"] and d2["decisionId"] != d1["decisionId"]
        assert d2["kind"] == "urgent-task" and d2["grade"] == 3  # escalated by the new evidence
        # writeback writes the Task (task-written, recorded by triage-feedback); the clinician
        # completes it (task-updated: the ledger gets the action); the episode closes
        await agents.publish("feedback", [task_written(agents.tenant, d1, "task-9")])
        await wait_for(lambda: _row(agents, d1["decisionId"], "task_id"))
        await agents.publish("feedback", [Event.new(
            "vigil.ehr.task-updated", source="/test", tenant=agents.tenant, key=patient, id=str(uuid.uuid4()),
            data={"task": {"id": "task-9", "versionId": "2"}, "patient": patient, "status": "completed",
                  "statusReason": None, "note": None, "lastUpdated": "2026-03-03T09:00:00Z",
                  "decisions": [d1["decisionId"], d2["decisionId"]], "clinician": onc, "grade": 3,
                  "modelVersion": "rules-test"})])
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            async with agents.pools.tx(agents.tenant, readonly=True) as conn:
                status = await conn.fetchval("SELECT status FROM vigil_triage_episodes WHERE episode_key = $1",
                                             d1["episodeKey"])
            if status == "closed":
                break
            await asyncio.sleep(0.2)
        assert status == "closed"
        row = await ledger(agents).get(agents.tenant, d1["decisionId"])
        assert (row["task_id"], row["written_refs"], row["clinician_action"]) == (
            "task-9", ["Task/task-9/_history/1"], "accepted")
        await agents.publish("findings", [third])
        d3 = [e.data for e in await agents.read("actions", 3)][2]  # task-written goes on feedback
    assert d3["episodeAction"] == "open" and d3["episodeKey"] != d1["episodeKey"]
    assert d3["kind"] == "routine-task" and d3["grade"] == 1


async def test_silent_and_pilot_modes(agents):
    patient, onc = await patient_with_oncologist(agents.ehr.client)
    other, onc_other = await patient_with_oncologist(agents.ehr.client)
    agents.registry(mode="silent")
    async with agents.host(triage_specs(agents)):
        await agents.publish("findings", [findings(agents.tenant, patient, "d1", "1", [finding("pneumonitis", 2)])])
        [silent] = [e.data for e in await agents.read("actions", 1)]
        assert silent["mode"] == "silent" and silent["write"] is False
        assert await agents.read("scheduling", 0, timeout=1.0) == []  # nothing is booked for a silent decision
        row = await ledger(agents).get(agents.tenant, silent["decisionId"])
        assert row["mode"] == "silent" and row["write"] is False and row["output"]["withinDays"] == 7
        store = ModeAdmin(agents.pools, agents.settings.tenants_file, promotion_checks=())
        await store.set_mode(agents.tenant, "pilot", actor="test", pilot_practitioners=[onc])
        await asyncio.sleep(1.2)  # the stage's mode cache (<= 1 s)
        await agents.publish("findings", [
            findings(agents.tenant, patient, "d2", "1", [finding("thyroiditis", 1)]),
            findings(agents.tenant, other, "d3", "1", [finding("thyroiditis", 1)])])
        later = {e.data["patient"]: e.data for e in (await agents.read("actions", 3))[1:]}
    assert later[patient]["mode"] == "pilot" and later[patient]["write"] is True
    assert later[other]["mode"] == "pilot" and later[other]["write"] is False and later[other]["owner"] == onc_other


async def test_kill_switch_stops_decisions_within_seconds_without_restart(agents):
    patient, _ = await patient_with_oncologist(agents.ehr.client)
    store = ModeAdmin(agents.pools, agents.settings.tenants_file, promotion_checks=())
    async with agents.host(triage_specs(agents)):
        await agents.publish("findings", [findings(agents.tenant, patient, "k0", "1", [finding("colitis", 3)], n=0)])
        assert len(await agents.read("actions", 1)) == 1
        await store.kill(agents.tenant, "triage", actor="oncall", reason="drill")
        killed_at = time.monotonic()
        await asyncio.sleep(1.1)
        await agents.publish("findings", [findings(agents.tenant, patient, "k1", "1", [finding("colitis", 3)], n=1)])
        assert len(await agents.read("actions", 2, timeout=5.0)) == 1  # nothing new while killed
        async with agents.pools.tx(agents.tenant, readonly=True) as conn:
            suppressed = await conn.fetch("SELECT suppressed FROM vigil_decisions WHERE document_id = 'k1'")
        assert [r["suppressed"] for r in suppressed] == ["kill-switch"]  # decided and recorded, not emitted
        await store.kill(agents.tenant, on=False, actor="oncall")  # tenant-wide off does not lift the agent switch
        await store.kill(agents.tenant, "triage", on=False, actor="oncall")
        await asyncio.sleep(1.1)
        await agents.publish("findings", [findings(agents.tenant, patient, "k2", "1", [finding("colitis", 3)], n=2)])
        after = await agents.read("actions", 2, timeout=15)
    assert len(after) == 2 and after[1].data["document"]["id"] == "k2"
    assert time.monotonic() - killed_at < 60


async def test_redelivered_findings_reemit_the_recorded_decision(agents):
    """Decision ids are deterministic: handling the same event twice decides once (one episode)."""
    patient, onc = await patient_with_oncologist(agents.ehr.client)
    handler = triage_specs(agents)[0].handler
    event = findings(agents.tenant, patient, "r1", "1", [finding("nephritis", 2, "grade 2 nephritis")])

    class Ctx:
        tenant, stage = agents.tenant, "triage"

        def __init__(self):
            self.out, self._i = [], 0

        def emit(self, stream, ev):
            self.out.append((stream, ev))

        def child(self, type, data, key=None):
            self._i += 1
            return event.child(type, data, stage="triage", index=self._i, key=key)

        @property
        def log(self):
            from services.core.logging import get_logger
            return get_logger("test")

    first, second = Ctx(), Ctx()
    await handler(event, first)
    await handler(event, second)
    # the same decision (a sealed quote differs in its nonce only: compare the opened payloads)
    opened = [[(s, e.id, e.data) for s, e in zip([s for s, _ in ctx.out], await agents.opened([e for _, e in ctx.out]))]
              for ctx in (first, second)]
    assert opened[0] == opened[1] and opened[0][0][2]["finding"]["quote"] == "grade 2 nephritis"
    assert [s for s, _ in first.out] == ["actions", "scheduling"]
    async with agents.pools.tx(agents.tenant, readonly=True) as conn:
        n = await conn.fetchval("SELECT count(*) FROM vigil_triage_episodes WHERE patient = $1", patient)
    assert n == 1


async def test_a_version_1_findings_event_replayed_raw_is_handled_and_leaves_sealed(agents):
    """A dead letter from before quotes were sealed, replayed byte for byte (``send_raw``, as the
    control service replays): triage opens nothing, decides as before, and its decision is sealed."""
    from services.core.bus import Publisher
    from services.core.events import encode

    p1, onc1 = await patient_with_oncologist(agents.ehr.client)
    quote = "grade 3 immune-mediated colitis"
    old = findings(agents.tenant, p1, "doc-v1", "1", [finding("colitis", 3, quote, start=40)])
    record = encode(old)
    assert quote.encode() in record.value  # version 1: the quote in clear
    async with Publisher(agents.stack, agents.tenant) as pub:
        await (await pub.send_raw(f"vigil.{agents.tenant}.findings", record.key, record.value, record.headers))
    async with agents.host(triage_specs(agents)):
        wire = await agents.read("actions", 1)
    assert "quote" not in wire[0].data["finding"] and wire[0].data["finding"]["quoteSealed"]
    (decision,) = await agents.opened(wire)
    assert decision.data["finding"]["quote"] == quote and decision.data["owner"] == onc1
    assert await agents.read("dlq", 0, timeout=0.5) == []


async def test_card_feedback_and_unknown_writes_reach_the_ledger_once(agents):
    """A CDS Hooks card's answer (vigil.cdshooks.feedback) labels exactly its decisions in the ledger;
    a task-written for a decision the ledger does not hold is logged and committed, not retried."""
    patient, onc = await patient_with_oncologist(agents.ehr.client)
    event = findings(agents.tenant, patient, "doc-c1", "1", [finding("colitis", 2, "grade 2 colitis"),
                                                            finding("rash", 1, "mild rash")], n=1)
    async with agents.host(triage_specs(agents)) as host:
        await agents.publish("findings", [event])
        decided = [e.data for e in await agents.read("actions", 2)]
        chosen, other = decided[0], decided[1]
        assert {d["noteTime"] for d in decided} == {"2026-03-02T10:15:00Z"}   # writeback need not read the note
        stranger = {**chosen, "decisionId": "not-in-the-ledger"}
        card = Event.new("vigil.cdshooks.feedback", source="/test", tenant=agents.tenant, key=patient,
                         id=str(uuid.uuid4()), data={
                             "card": "card-1", "patient": patient, "outcome": "overridden", "reason": "not-irae",
                             "task": None, "decisions": [chosen["decisionId"]], "clinician": onc,
                             "category": chosen["category"], "grade": chosen["grade"],
                             "modelVersion": "rules-test", "time": "2026-03-04T10:00:00Z"})
        await agents.publish("feedback", [task_written(agents.tenant, stranger, "task-x")])
        await agents.publish("feedback", [card, card])
        await wait_for(lambda: _row(agents, chosen["decisionId"], "clinician_action"))
        await wait_idle(agents.stack, agents.tenant, host.specs)
    row = await ledger(agents).get(agents.tenant, chosen["decisionId"])
    assert (row["clinician_action"], row["action_reason"], row["action_time"].isoformat()) == (
        "overridden", "not-irae", "2026-03-04T10:00:00+00:00")
    assert (await ledger(agents).get(agents.tenant, other["decisionId"]))["clinician_action"] is None
    assert await agents.read("dlq", 0, timeout=0.5) == []
