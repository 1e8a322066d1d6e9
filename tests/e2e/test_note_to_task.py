"""The whole path, in process, on the real broker, Redis, PostgreSQL and EHR sandbox:

note written to the EHR -> the EHR's own Subscription (rest-hook) -> ingest receiver ->
ehr-events -> extraction (tools + inference over loopback gRPC, rules engine) -> findings ->
triage (owner from the CareTeam) -> actions -> writeback -> one Task in the oncologist's inbox
with Provenance, AIAST and an AuditEvent -> the clinician overrides it on the inbox page ->
Task subscription -> ingest -> feedback -> the override in triage's decision ledger.
"""
from __future__ import annotations

import asyncio
import base64
import html
import json
import re
import time

import pytest
import uvicorn

from services.core.agentclients import AgentClients
from services.core.bus import Publisher, ensure_stage_topics
from services.core.bus.service import StageHost
from services.core.events import decode
from services.core.db import create_pool, ensure_schema
from services.core.fhir import attachment_text
from services.core.grpc.settings import GrpcSettings
from services.core.tenancy import Registry, Tenant
from services.ehr.inbox.session import issue_link
from services.extraction import app as extraction_app
from services.inference import app as inference_app
from services.ingest.directory import EhrDirectory
from services.ingest.publishing import Publishers
from services.ingest.receiver.app import ReceiverContext, create_app as receiver_app
from services.ingest.receiver.auth import channel_header, signing_secret
from services.ingest.receiver.handler import NotificationHandler
from services.ingest.store import schema as ingest_schema
from services.ingest.subscribe import TOPICS, ensure_subscriptions
from services.tools import app as tools_app
from services.triage import app as triage_app, episodes
from services.writeback import app as writeback_app
from services.writeback import resources as R
from tests.fixtures.kafka import wait_idle
from tests.fixtures.phi import note_snippets, scan_for_phi
from tests.fixtures.writeback import FAST_RETRY, FAST_TUNING
from tests.integration.writeback.test_writeback import _read as read_stream
from tests.fixtures.ports import free_port

TOKEN_KEY = "k" * 48
FIRST = ("Oncology clinic. Cycle 4 of nivolumab for metastatic melanoma.\n"
         "Assessment: grade 2 immune-mediated colitis, 5 loose stools a day.\n"
         "Plan: start prednisone 1 mg/kg, hold nivolumab.\n")
SECOND = ("Oncology clinic follow-up. Cycle 4 of nivolumab.\n"
          "Assessment: grade 3 immune-mediated colitis with 8 stools per day.\n"
          "Plan: hold nivolumab, start methylprednisolone 1 mg/kg IV, admit.\n")
PATIENT_FAMILY = "Quillfeatherson"
AI = ("http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "AIAST")



def doc_ref(patient: str, text: str) -> dict:
    return {"resourceType": "DocumentReference", "status": "current", "date": "2026-11-20T10:15:00Z",
            "type": {"coding": [{"system": "http://loinc.org", "code": "11506-3"}]},
            "subject": {"reference": f"Patient/{patient}"},
            "content": [{"attachment": {"contentType": "text/plain; charset=utf-8",
                                        "data": base64.b64encode(text.encode()).decode()}}]}


class Pipeline:
    """Every stage and server of the path, started for one tenant."""

    def __init__(self, wb, secrets):
        self.wb, self.secrets = wb, secrets
        self.ehr = wb.ehr
        self.client = wb.ehr.client

    async def start(self, tmp_path) -> None:
        wb = self.wb
        admin = await create_pool(wb.stack, min_size=1, max_size=2)
        try:
            await ensure_schema(admin, episodes.SCHEMA_MODULE, episodes.SCHEMA_STEPS)
            await ingest_schema.migrate(admin)
        finally:
            await admin.close()
        tools_creds = await self.ehr.admin.new_client(wb.tenant, "vigil-tools", ["system/*.rs"])
        (tmp_path / "tools.pem").write_text(tools_creds.private_key_pem)
        self.tenant = wb.registry(fhir_client_id="vigil-tools", fhir_private_key_file=str(tmp_path / "tools.pem"),
                                  fhir_key_id=tools_creds.kid)
        grpc = GrpcSettings.from_env({"VIGIL_GRPC_TOKEN_KEY": TOKEN_KEY})
        self.tools = await tools_app.start(wb.settings, grpc, address="127.0.0.1:0", secrets=self.secrets)
        self.inference = await inference_app.start(wb.settings, grpc, address="127.0.0.1:0", env={})
        self.agent_clients = AgentClients(grpc, sub="e2e", targets={
            "tools": f"127.0.0.1:{self.tools.port}", "inference": f"127.0.0.1:{self.inference.port}"})
        self.specs = [*extraction_app.specs(self.agent_clients, wb.pools, retry=FAST_RETRY, tuning=FAST_TUNING),
                      *triage_app.specs(wb.pools, self.agent_clients, wb.settings, retry=FAST_RETRY,
                                        tuning=FAST_TUNING),
                      *writeback_app.specs(wb.deps, retry=FAST_RETRY, tuning=FAST_TUNING)]
        # ingest: the notification receiver the EHR's Subscriptions call
        registry = Registry.load(wb.path)
        self.publishers = Publishers(wb.stack)
        await self.publishers.start()
        self.directory = EhrDirectory(wb.stack, registry, clients={wb.tenant: self.client})
        handler = NotificationHandler(wb.pools, self.publishers, self.directory)
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(receiver_app(ReceiverContext(registry, self.secrets, handler)),
                                                    host="127.0.0.1", port=self.port, log_level="warning",
                                                    access_log=False, lifespan="off"))
        self.server_task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            await asyncio.sleep(0.02)
        # the EHR signs its notifications (kept in its admin configuration, not in the Subscription)
        await self.ehr.admin.set_notify_secret(wb.tenant, signing_secret(self.secrets, wb.tenant))
        rows = await ensure_subscriptions(self.client, f"http://127.0.0.1:{self.port}/notify/{wb.tenant}",
                                          channel_header(self.secrets, wb.tenant), TOPICS[:2])
        for row in rows:
            await wb.wait(lambda: self._active(row["id"]))

    async def _active(self, sub: str) -> bool:
        return (await self.client.read("Subscription", sub)).get("status") == "active"

    async def stop(self) -> None:
        for sub in await self.client.search("Subscription", {"_count": "100"}):
            await self.client.delete("Subscription", sub["id"])
        self.server.should_exit = True
        await self.server_task
        await self.publishers.stop()
        await self.directory.close()
        await self.agent_clients.close()
        await self.tools.stop()
        await self.inference.stop()


@pytest.fixture
async def pipeline(wb_tenant, wb_secrets, tmp_path):
    p = Pipeline(wb_tenant, wb_secrets)
    await p.start(tmp_path)
    yield p
    await p.stop()


async def patient_with_oncologist(client) -> tuple[str, str]:
    patient = (await client.create({"resourceType": "Patient", "name": [{"family": PATIENT_FAMILY, "given": ["Pat"]}]})).id
    onc = (await client.create({"resourceType": "Practitioner", "name": [{"family": "Onco", "given": ["Olive"]}]})).id
    await client.create({"resourceType": "CareTeam", "status": "active", "subject": {"reference": f"Patient/{patient}"},
                         "participant": [{"role": [{"coding": [{"system": "http://snomed.info/sct",
                                                                "code": "309295000", "display": "Oncologist"}]}],
                                          "member": {"reference": f"Practitioner/{onc}"}}]})
    return patient, onc


async def tasks_of(client, patient: str) -> list[dict]:
    return await client.search("Task", {"patient": patient})


async def snapshot(wb, patient: str) -> dict:
    out = {}
    for rtype, params in (("Task", {"patient": patient}), ("Observation", {"patient": patient}),
                          ("DetectedIssue", {"patient": patient}), ("Provenance", {}), ("AuditEvent", {}),
                          ("Device", {})):
        found = await wb.ehr.client.search(rtype, params)
        out[rtype] = sorted((r["id"], r["meta"]["versionId"]) for r in found)
    return out


def ai(resource: dict) -> bool:
    return any((s["system"], s["code"]) == AI for s in resource["meta"].get("security", []))


async def test_note_becomes_one_task_updates_and_override_becomes_a_label(pipeline, wb_tenant, capfd):
    wb, client = wb_tenant, pipeline.client
    patient, onc = await patient_with_oncologist(client)
    await ensure_stage_topics(wb.stack, Tenant(id=wb.tenant), pipeline.specs)
    host = StageHost(wb.settings, pipeline.specs, port=0, host="127.0.0.1", tenants=[wb.tenant])
    await host.start()
    stop = asyncio.Event()
    runner = asyncio.create_task(host.run(stop))
    try:
        # 1. a note is written to the EHR: exactly one Task in the oncologist's inbox
        started = time.monotonic()
        doc1 = (await client.create(doc_ref(patient, FIRST))).resource
        (task,) = await wb.wait(lambda: tasks_of(client, patient), timeout=60)
        time_to_task = time.monotonic() - started
        assert task["owner"] == {"reference": f"Practitioner/{onc}"} and ai(task)
        assert (task["status"], task["intent"], task["priority"]) == ("requested", "proposal", "routine")
        quote = R.task_inputs(task, "evidence-quote")[0]
        s, e = R.task_inputs(task, "evidence-start")[0], R.task_inputs(task, "evidence-end")[0]
        assert FIRST[s:e] == quote
        assert R.task_inputs(task, "source-note") == [
            {"reference": f"DocumentReference/{doc1['id']}/_history/{doc1['meta']['versionId']}"}]
        provs = await client.search("Provenance", {"target": f"Task/{task['id']}"})
        assert len(provs) == 1 and ai(provs[0])
        assert provs[0]["entity"][0]["what"]["reference"].startswith(f"DocumentReference/{doc1['id']}/_history/")
        audits = await client.search("AuditEvent", {})
        assert any(f"Task/{task['id']}" in {x["what"]["reference"] for x in a["entity"]} for a in audits)
        await wait_idle(wb.stack, wb.tenant, pipeline.specs)  # every event so far handled: a duplicate write is in
        before = await snapshot(wb, patient)
        assert len(before["Task"]) == 1 and len(before["Provenance"]) == 1 and len(before["AuditEvent"]) == 1

        # 2. the same EHR event delivered twice more (a re-sent notification, a replay): nothing changes
        note_events = [decode(m.key, m.value, m.headers) for m in await read_stream(wb, "ehr-events")]
        note_events = [ev for ev in note_events if ev.data["resourceType"] == "DocumentReference"]
        assert len(note_events) == 1
        async with Publisher(wb.stack, wb.tenant) as pub:
            await pub.publish_many("ehr-events", [note_events[0], note_events[0]])
        await wait_idle(wb.stack, wb.tenant, pipeline.specs)  # both deliveries went through every stage
        assert await snapshot(wb, patient) == before

        # 3. a second note about the same episode updates the Task (no second Task)
        doc2 = (await client.create(doc_ref(patient, SECOND))).resource

        async def updated():
            found = await tasks_of(client, patient)
            return found if found and found[0]["meta"]["versionId"] != task["meta"]["versionId"] else None
        (task2,) = await wb.wait(updated, timeout=60)
        assert task2["id"] == task["id"] and task2["priority"] == "urgent"
        assert R.task_inputs(task2, "grade") == [3]
        assert R.task_inputs(task2, "source-note")[0]["reference"].startswith(f"DocumentReference/{doc2['id']}/")
        assert len(await client.search("Provenance", {"target": f"Task/{task['id']}"})) == 2

        # 4. the inbox page shows the evidence highlighted; Override there -> the clinician's action
        #    in triage's ledger (the monitor labels the same event: tests/integration/monitor)
        import httpx

        inbox = httpx.AsyncClient(base_url=wb.ehr.server.url, follow_redirects=True)
        try:
            r = await inbox.get(f"/inbox/{wb.tenant}/login",
                                params={"token": issue_link(wb.ehr.server.admin_secret, wb.tenant, onc)})
            assert r.status_code == 200
            page = await inbox.get(f"/inbox/{wb.tenant}/tasks/{task['id']}")
            assert page.status_code == 200
            marked = [html.unescape(m) for m in re.findall(r"<mark>(.*?)</mark>", page.text, re.S)]
            newest = R.task_inputs(task2, "evidence-quote")[0]
            assert newest in marked, "the inbox highlights the evidence quote writeback wrote"
            assert "AIAST" in page.text or "AI" in page.text
            csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
            clicked = time.monotonic()
            r = await inbox.post(f"/inbox/{wb.tenant}/tasks/{task['id']}/override", data={
                "csrf": csrf, "version": task2["meta"]["versionId"], "reason": "other-cause",
                "comment": "infectious diarrhea"})
            assert r.status_code == 200
        finally:
            await inbox.aclose()
        async def labelled():  # triage-feedback records the override on every decision of the Task
            found = [r for r in await wb.ledger.by_task(wb.tenant, task["id"]) if r["clinician_action"]]
            return found if len(found) >= 2 else None
        rows = await wb.wait(labelled, timeout=30)
        time_to_label = time.monotonic() - clicked
        assert {(r["clinician_action"], r["action_reason"]) for r in rows} == {("overridden", "other-cause")}
        assert len(rows) == 2  # one per decision of the episode
        # the feedback event carries what the monitor's labels need, read from the Task by ingest
        (updated,) = [json.loads(m.value) for m in await read_stream(wb, "feedback")
                      if dict(m.headers).get("ce_type") == b"vigil.ehr.task-updated"
                      and json.loads(m.value)["status"] == "rejected"]
        assert sorted(updated["decisions"]) == sorted(r["id"] for r in rows)
        assert (updated["clinician"], updated["category"]) == (f"Practitioner/{onc}", "colitis")
        assert time_to_label < 15, time_to_label
        # no PHI in anything the services logged: note text, quotes, the patient's name, the comment
        logged = capfd.readouterr()
        markers = [(m, "note") for m in note_snippets(FIRST) + note_snippets(SECOND)] + [
            (quote, "quote"), (newest, "quote"), (PATIENT_FAMILY, "name"), ("infectious diarrhea", "comment")]
        assert "writeback.written" in logged.out + logged.err, "the services' logs were captured"
        hits = scan_for_phi(logged.out + logged.err, markers)
        assert not hits, [(h.kind, h.line) for h in hits]
        print(f"\ntime note->Task {time_to_task:.2f} s; override->ledger {time_to_label:.2f} s")
    finally:
        stop.set()
        await runner
        await host.stop()
