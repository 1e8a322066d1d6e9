"""writeback against the real broker, PostgreSQL, Redis and the EHR sandbox."""
from __future__ import annotations

import asyncio
import json

from services.core.bus import dlq_topic
from services.core.tenancy import topic_name
from services.writeback import resources as R
from tests.fixtures.kafka import wait_idle
from tests.fixtures.writeback import new_patient

AI = ("http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "AIAST")


def ai(resource: dict) -> bool:
    return any((s["system"], s["code"]) == AI for s in resource["meta"].get("security", []))


async def patient(wb) -> str:
    pid = new_patient()
    await wb.ehr.client.update({"resourceType": "Patient", "id": pid, "name": [{"family": "Test", "given": ["Pat"]}]})
    return pid


async def written(wb, decision_id: str) -> dict | None:
    row = await _recorded(wb, decision_id)
    return row if row and row["written_refs"] else None


async def counts(wb, pid: str) -> dict:
    return {"Task": await wb.count("Task", patient=pid), "Observation": await wb.count("Observation", patient=pid),
            "DetectedIssue": await wb.count("DetectedIssue", patient=pid),
            "Provenance": await wb.count("Provenance"), "AuditEvent": await wb.count("AuditEvent"),
            "Device": await wb.count("Device")}


async def test_decision_becomes_one_task_with_provenance_and_audit(wb_tenant):
    wb = wb_tenant
    pid = await patient(wb)
    doc = await wb.note(pid)
    ev = wb.decision(pid, doc)
    async with wb.host():
        await wb.publish("actions", [ev])
        row = await wb.wait(lambda: written(wb, ev.data["decisionId"]))
    refs = row["written_refs"]
    assert sorted(r.split("/")[0] for r in refs) == ["AuditEvent", "Device", "Observation", "Provenance", "Task"]
    tasks = await wb.ehr.client.search("Task", {"patient": pid})
    assert len(tasks) == 1
    task = tasks[0]
    assert (task["status"], task["intent"], task["priority"]) == ("requested", "proposal", "routine")
    assert task["owner"] == {"reference": "Practitioner/onc-1"} and task["for"] == {"reference": f"Patient/{pid}"}
    assert ai(task) and R.has_identifier(task, R.DECISION_SYSTEM, ev.data["decisionId"])
    assert task["restriction"]["period"]["end"] > task["restriction"]["period"]["start"]
    note_ref = f"DocumentReference/{doc['id']}/_history/{doc['meta']['versionId']}"
    assert R.task_inputs(task, "source-note") == [{"reference": note_ref}]
    assert R.task_inputs(task, "evidence-quote") == ["6-7 watery stools per day"]
    start = R.task_inputs(task, "evidence-start")[0]
    assert start == ev.data["finding"]["start"] and R.task_inputs(task, "evidence-end") == [start + 25]
    obs = await wb.ehr.client.read("Observation", task["focus"]["reference"].split("/")[1])
    assert obs["status"] == "preliminary" and ai(obs) and obs["derivedFrom"] == [{"reference": note_ref}]
    assert {c["code"]["text"]: next(v for k, v in c.items() if k.startswith("value")) for c in obs["component"]} == {
        "evidence-quote": "6-7 watery stools per day", "evidence-start": start, "evidence-end": start + 25,
        "grade": 2}
    provs = await wb.ehr.client.search("Provenance", {"target": f"Task/{task['id']}"})
    assert len(provs) == 1 and ai(provs[0])
    prov = provs[0]
    assert prov["target"][0]["reference"] == f"Task/{task['id']}/_history/1"
    assert prov["entity"] == [{"role": "derivation", "what": {"reference": note_ref}}]
    device = await wb.ehr.client.read("Device", prov["agent"][0]["who"]["reference"].split("/")[1])
    assert device["type"]["coding"][0]["code"] == "artificial-intelligence"
    assert device["version"] == [{"value": "rules-2026.11"}]
    audits = await wb.ehr.client.search("AuditEvent", {})
    assert len(audits) == 1 and {e["what"]["reference"] for e in audits[0]["entity"]} >= {
        f"Task/{task['id']}", f"Observation/{obs['id']}"}
    assert (await wb.ledger.get(wb.tenant, ev.data["decisionId"]))["task_id"] == task["id"]


async def test_urgent_decision_writes_a_detected_issue(wb_tenant):
    wb = wb_tenant
    pid = await patient(wb)
    doc = await wb.note(pid)
    ev = wb.decision(pid, doc, kind="urgent-task", grade=3)
    async with wb.host():
        await wb.publish("actions", [ev])
        await wb.wait(lambda: written(wb, ev.data["decisionId"]))
    (task,) = await wb.ehr.client.search("Task", {"patient": pid})
    assert task["priority"] == "urgent" and task["focus"]["reference"].startswith("DetectedIssue/")
    issue = await wb.ehr.client.read("DetectedIssue", task["focus"]["reference"].split("/")[1])
    assert issue["severity"] == "high" and issue["detail"] == "6-7 watery stools per day" and ai(issue)
    assert await wb.count("Observation", patient=pid) == 0


async def test_duplicate_and_replayed_decisions_change_nothing(wb_tenant):
    wb = wb_tenant
    pid = await patient(wb)
    doc = await wb.note(pid)
    ev = wb.decision(pid, doc)
    async with wb.host() as host:
        await wb.publish("actions", [ev, ev])
        await wb.wait(lambda: written(wb, ev.data["decisionId"]))
        await wait_idle(wb.stack, wb.tenant, host.specs)  # the second delivery handled too
        before = await counts(wb, pid)
        (task_before,) = await wb.ehr.client.search("Task", {"patient": pid})
        # replay: the Redis ledger of processed events is gone (e.g. a DLQ replay or a new cluster)
        await forget_processed(wb)
        await wb.publish("actions", [ev])
        await wait_idle(wb.stack, wb.tenant, host.specs)  # the replay handled
    assert await counts(wb, pid) == before
    assert before["Task"] == 1 and before["Observation"] == 1 and before["Provenance"] == 1
    (task_after,) = await wb.ehr.client.search("Task", {"patient": pid})
    assert task_after["meta"]["versionId"] == task_before["meta"]["versionId"]
    # every delivery restates the fact (so a replay reaches the ledger) under one event id: taken once
    facts = [m for m in await _read(wb, "feedback") if dict(m.headers).get("ce_type") == b"vigil.writeback.task-written"]
    assert len(facts) >= 1 and len({dict(m.headers)["ce_id"] for m in facts}) == 1
    assert {json.loads(m.value)["action"] for m in facts} == {"created"}


async def test_second_decision_of_the_episode_updates_the_task(wb_tenant):
    wb = wb_tenant
    pid = await patient(wb)
    doc1 = await wb.note(pid)
    text2 = "Follow-up call: diarrhea worse, now 8 stools per day with cramping; colitis grade 3."
    doc2 = await wb.note(pid, text2)
    first = wb.decision(pid, doc1)
    second = wb.decision(pid, doc2, kind="urgent-task", grade=3, quote="8 stools per day", text=text2, n=1,
                         action="update")
    async with wb.host():
        await wb.publish("actions", [first])
        await wb.wait(lambda: written(wb, first.data["decisionId"]))
        await wb.publish("actions", [second])
        await wb.wait(lambda: written(wb, second.data["decisionId"]))
    (task,) = await wb.ehr.client.search("Task", {"patient": pid})
    assert task["meta"]["versionId"] == "2" and task["priority"] == "urgent"
    assert R.task_inputs(task, "grade") == [3]
    assert R.task_inputs(task, "evidence-quote") == ["8 stools per day", "6-7 watery stools per day"]
    assert R.task_inputs(task, "source-note")[0]["reference"].startswith(f"DocumentReference/{doc2['id']}/")
    assert R.has_identifier(task, R.DECISION_SYSTEM, first.data["decisionId"])
    assert R.has_identifier(task, R.DECISION_SYSTEM, second.data["decisionId"])
    provs = await wb.ehr.client.search("Provenance", {"target": f"Task/{task['id']}"})
    assert sorted(p["target"][0]["reference"] for p in provs) == [f"Task/{task['id']}/_history/1",
                                                                  f"Task/{task['id']}/_history/2"]
    assert await wb.count("AuditEvent") == 2
    row = await wb.ledger.get(wb.tenant, second.data["decisionId"])
    assert f"Task/{task['id']}/_history/2" in row["written_refs"]


async def test_silent_mode_writes_nothing(wb_tenant):
    wb = wb_tenant
    pid = await patient(wb)
    doc = await wb.note(pid)
    ev = wb.decision(pid, doc, mode="silent", write=False)
    live = wb.decision(pid, doc, n=1)
    await wb.modes.set_mode(wb.tenant, "silent", actor="test")
    async with wb.host() as host:
        await wb.publish("actions", [ev, live])
        row = await wb.wait(lambda: _recorded(wb, live.data["decisionId"]))
        await wait_idle(wb.stack, wb.tenant, host.specs)  # both decisions handled
    assert row["written_refs"] == [] and row["task_id"] is None
    assert (await wb.ledger.get(wb.tenant, ev.data["decisionId"]))["written_refs"] == []
    assert await wb.count("Task", patient=pid) == 0 and await wb.count("Provenance") == 0
    assert [m for m in await _read(wb, "feedback") if dict(m.headers).get("ce_type") ==
            b"vigil.writeback.task-written"] == []


async def test_pilot_writes_only_for_listed_owners(wb_tenant):
    wb = wb_tenant
    pid = await patient(wb)
    doc = await wb.note(pid)
    listed = wb.decision(pid, doc, mode="pilot", owner="Practitioner/pilot-1", episode="e1")
    other = wb.decision(pid, doc, mode="pilot", owner="Practitioner/other", episode="e2", n=1)
    await wb.modes.set_mode(wb.tenant, "pilot", actor="test", force=True, reason="test",
                                 pilot_practitioners=["Practitioner/pilot-1"])
    async with wb.host():
        await wb.publish("actions", [other, listed])
        await wb.wait(lambda: written(wb, listed.data["decisionId"]))
    assert (await wb.ledger.get(wb.tenant, other.data["decisionId"]))["written_refs"] == []
    (task,) = await wb.ehr.client.search("Task", {"patient": pid})
    assert task["owner"]["reference"] == "Practitioner/pilot-1"


async def _recorded(wb, decision_id):
    from services.core.errors import NotFoundError

    try:
        return await wb.ledger.get(wb.tenant, decision_id)
    except NotFoundError:
        return None


async def test_kill_switch_stops_writes_within_seconds_and_replay_writes_once(wb_tenant):
    wb = wb_tenant
    pid = await patient(wb)
    doc = await wb.note(pid)
    first = wb.decision(pid, doc, episode="k1")
    blocked = wb.decision(pid, doc, episode="k2", n=1)
    async with wb.host():
        await wb.publish("actions", [first])
        await wb.wait(lambda: written(wb, first.data["decisionId"]))
        await wb.modes.kill(wb.tenant, "writeback", actor="test", reason="test")
        await asyncio.sleep(1.2)  # > modes.CACHE_TTL_S: every process sees the switch
        await wb.publish("actions", [blocked])
        dead = await _dlq(wb, 1)
        assert dead and await wb.count("Task", patient=pid) == 1
        assert (await wb.ledger.get(wb.tenant, blocked.data["decisionId"]))["written_refs"] == []
        await wb.modes.kill(wb.tenant, "writeback", on=False, actor="test")
        await forget_processed(wb)
        await asyncio.sleep(1.2)
        await wb.publish("actions", [blocked])  # what `vigil dlq replay` does: the same event again
        await wb.wait(lambda: written(wb, blocked.data["decisionId"]))
    assert await wb.count("Task", patient=pid) == 2


async def forget_processed(wb) -> None:
    """Drop the stage's processed-event ledger (Redis), as a replay from the DLQ or another cluster sees it."""
    from services.core import kv

    redis = kv.admin_client(wb.stack)
    async for name in redis.scan_iter(match=f"vigil:{wb.tenant}:*", count=10_000):
        await redis.delete(name)
    await redis.aclose()


async def _dlq(wb, want: int, timeout: float = 20.0) -> list:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(enable_auto_commit=False, auto_offset_reset="earliest",
                                **wb.stack.kafka.client_kwargs())
    await consumer.start()
    tps = [TopicPartition(dlq_topic(wb.tenant), p) for p in range(4)]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    got: list = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        while len(got) < want and loop.time() < deadline:
            for msgs in (await consumer.getmany(timeout_ms=200)).values():
                got.extend(msgs)
    finally:
        await consumer.stop()
    return got


async def test_dropped_writes_are_never_reported_written(wb_tenant):
    wb = wb_tenant
    pid = await patient(wb)
    doc = await wb.note(pid)
    ev = wb.decision(pid, doc)
    await wb.ehr.admin.set_faults(wb.tenant, drop_writes=True)
    try:
        async with wb.host():
            await wb.publish("actions", [ev])
            dead = await _dlq(wb, 1)
            await asyncio.sleep(0.5)
    finally:
        await wb.ehr.admin.clear_faults(wb.tenant)
    assert len(dead) == 1
    headers = {k: v.decode() for k, v in dead[0].headers}
    assert "write_not_verified" in " ".join(headers.values())
    assert await wb.count("Task", patient=pid) == 0
    row = await wb.ledger.get(wb.tenant, ev.data["decisionId"])
    assert row["written_refs"] == [] and row["written_at"] is None
    written_events = [m for m in await _read(wb, "feedback") if dict(m.headers).get("ce_type") ==
                      b"vigil.writeback.task-written"]
    assert written_events == []


async def _read(wb, stream: str) -> list:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(enable_auto_commit=False, **wb.stack.kafka.client_kwargs())
    await consumer.start()
    tps = [TopicPartition(topic_name(wb.tenant, stream), p) for p in range(4)]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    got: list = []
    try:
        for _ in range(5):
            for msgs in (await consumer.getmany(timeout_ms=300)).values():
                got.extend(msgs)
    finally:
        await consumer.stop()
    return got


async def test_lost_response_is_found_by_identifier_not_written_twice(wb_tenant):
    """The EHR commits the transaction but the response never arrives (a timeout): the writer
    searches by the decision identifier before retrying and reports what it finds."""
    import httpx

    from services.core.fhir import FhirClient
    from services.writeback.writer import Writer

    class LoseFirstTransactionResponse(httpx.AsyncBaseTransport):
        def __init__(self):
            self.inner, self.lost = httpx.AsyncHTTPTransport(), 0

        async def handle_async_request(self, request):
            response = await self.inner.handle_async_request(request)
            if request.method == "POST" and request.url.path.rstrip("/").endswith(wb_tenant.tenant) and \
                    b'"transaction"' in request.content and not self.lost:
                await response.aread()
                self.lost += 1
                raise httpx.ReadTimeout("response lost", request=request)
            return response

        async def aclose(self):
            await self.inner.aclose()

    wb = wb_tenant
    pid = await patient(wb)
    doc = await wb.note(pid)
    ev = wb.decision(pid, doc)
    transport = LoseFirstTransactionResponse()
    creds = await wb.ehr.admin.new_client(wb.tenant, "vigil-writeback-lossy", ["system/*.cruds"])
    async with FhirClient(wb.ehr.base_url, credentials=creds, transport=transport) as client:
        async def allow():
            return None
        outcome = await Writer(client).write(ev.data, allow)
        assert transport.lost == 1 and outcome.action == "created"
        again = await Writer(client).write(ev.data, allow)
    assert again.action == "none" and again.task["id"] == outcome.task["id"]
    assert await wb.count("Task", patient=pid) == 1 and await wb.count("Provenance") == 1
    assert sorted(r.split("/")[0] for r in outcome.refs) == ["Device", "Observation", "Provenance", "Task"]


class CountingTransport:
    """An httpx transport that counts the FHIR interactions (not the token grant or metadata)."""

    def __new__(cls):
        import httpx

        class Counting(httpx.AsyncBaseTransport):
            def __init__(self):
                from services.core.httptransport import AiohttpTransport

                self.inner, self.calls = AiohttpTransport(), []  # what every outbound client sends over

            async def handle_async_request(self, request):
                path = request.url.path
                if not (path.endswith("/metadata") or "/auth/" in path or "/.well-known/" in path):
                    self.calls.append((request.method, path.rsplit("/", 1)[-1] if request.method == "POST" else path))
                return await self.inner.handle_async_request(request)

            async def aclose(self):
                await self.inner.aclose()

        return Counting()


async def test_a_new_decision_costs_three_ehr_round_trips_and_no_note_read(wb_tenant):
    """One search of the episode's Tasks, the transaction, the read-back in one batch; the note
    time comes from the decision event. An older event without noteTime still gets it, from the note."""
    import json

    from services.core.fhir import FhirClient
    from services.writeback.config import WRITE_SCOPE
    from services.writeback.deps import Deps

    wb = wb_tenant
    pid = await patient(wb)
    doc = await wb.note(pid)
    new = wb.decision(pid, doc, episode="rt1")
    new.data["noteTime"] = "2026-11-19T08:00:00Z"   # not the note's own date: proves it is not re-read
    old = wb.decision(pid, doc, episode="rt2", n=1, note_time=False)
    transport = CountingTransport()
    creds = await wb.ehr.admin.new_client(wb.tenant, "vigil-writeback-counted", WRITE_SCOPE.split())
    async with FhirClient(wb.ehr.base_url, credentials=creds, transport=transport) as client:
        deps = Deps(wb.settings, wb.deps.secrets, pools=wb.pools, clients={wb.tenant: client})
        async with wb.host(deps=deps):
            await wb.publish("actions", [new])
            await wb.wait(lambda: written(wb, new.data["decisionId"]))
            first = list(transport.calls)
            await wb.publish("actions", [old])
            await wb.wait(lambda: written(wb, old.data["decisionId"]))
            second = transport.calls[len(first):]
    assert [c[0] for c in first] == ["GET", "POST", "POST"], first
    assert first[0][1].split("?")[0].endswith("/Task"), first
    assert len(second) == 4 and any("DocumentReference" in c[1] for c in second), second
    facts = {json.loads(m.value)["decisionId"]: json.loads(m.value) for m in await _read(wb, "feedback")
             if dict(m.headers).get("ce_type") == b"vigil.writeback.task-written"}
    assert facts[new.data["decisionId"]]["noteTime"] == "2026-11-19T08:00:00+00:00"
    assert facts[old.data["decisionId"]]["noteTime"] == "2026-11-20T09:30:00+00:00"
    row = await wb.ledger.get(wb.tenant, new.data["decisionId"])   # triage-feedback recorded the refs
    assert row["task_id"] == facts[new.data["decisionId"]]["task"]["id"]
    assert sorted(row["written_refs"]) == sorted(facts[new.data["decisionId"]]["refs"])
