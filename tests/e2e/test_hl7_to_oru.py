"""An HL7-only site end to end: a note sent on the HL7 feed comes back to the site's interface
engine as one ORU^R01, and nothing is written into the EHR.

MDM^T02 over MLLP -> AA on durable receipt -> the hl7 stage (Vigil's document store) -> extraction
(GetNote from the store) -> triage -> writeback (the profile has no ``fhir`` channel: writes nothing)
and hl7out -> the test receiver. PID-3 of the result is the identifier the feed sent (from the
document store's patient index; hl7out never asks the EHR, whose client here fails the test).
The results echoed back into the feed (as an engine that broadcasts results does) change nothing.
"""
from __future__ import annotations

import asyncio
import dataclasses

import hl7

from services.core import crypto
from services.core.bus import ensure_stage_topics
from services.core.bus.service import StageHost
from services.core.integration import parse as parse_profile
from services.core.tenancy import Registry, Tenant
from services.extraction import app as extraction_app
from services.hl7out import app as hl7out_app
from services.hl7out.deps import Deps as Hl7OutDeps
from services.hl7out.message import control_id
from services.ingest.hl7.patientkey import PatientKeys
from services.ingest.hl7stage import app as hl7_app
from services.ingest.hl7stage.deps import Hl7Deps
from services.ingest.mllp.pipeline import Hl7Pipeline
from services.ingest.mllp.server import MllpServer
from services.triage import app as triage_app
from services.writeback import app as writeback_app
from tests.e2e.test_hl7_to_task import MRN_SYSTEM, mdm, send_all
from tests.e2e.test_note_to_task import pipeline  # noqa: F401  (the fixture)
from tests.fixtures.hl7_receiver import Hl7Receiver
from tests.fixtures.kafka import wait_idle
from tests.fixtures.writeback import FAST_RETRY, FAST_TUNING

FACILITY = "NORTHWING"
NOTES = 2


async def _stored_notes(wb) -> int:
    async with wb.pools.tx(wb.tenant, readonly=True) as conn:
        return await conn.fetchval("SELECT count(*) FROM ingest_documents WHERE tenant = $1", wb.tenant)


class NoEhr:
    async def client(self, tenant):
        raise AssertionError("hl7out must not read the EHR for a note from the document store")


async def test_hl7_only_site_gets_one_oru_per_finding_and_no_fhir_writes(pipeline, wb_tenant):  # noqa: F811
    wb, client = wb_tenant, pipeline.client
    receiver = Hl7Receiver()
    await receiver.start()
    entry = Registry.load(wb.path).get(wb.tenant)
    profile = parse_profile(wb.tenant, {
        "family": "hl7-only", "triggers": ["hl7v2-feed"], "note_sources": ["document-store"], "results": ["hl7v2"],
        "ehr_accepts": [], "hl7_out": {"host": "127.0.0.1", "port": receiver.port, "timeout_s": 2.0,
                                       "receiving_application": "ENGINE", "receiving_facility": FACILITY}})
    Registry(wb.path, [dataclasses.replace(entry, hl7_facilities=(FACILITY,), integration=profile, settings={
        **entry.settings, "hl7_patient_identifier_system": MRN_SYSTEM})]).save()
    registry = Registry.load(wb.path)
    patients = []
    for n in range(NOTES):
        pid = (await client.create({"resourceType": "Patient", "identifier": [
            {"system": MRN_SYSTEM, "value": f"MRN{n:04d}"}], "name": [{"family": "Oru"}]})).id
        patients.append(pid)
    hl7_deps = Hl7Deps(wb.settings, pipeline.secrets, registry=registry, clients={wb.tenant: client}, migrate=False)
    out_deps = Hl7OutDeps(wb.settings, pipeline.secrets, pools=wb.pools)
    out_deps.client = NoEhr().client
    specs = [*hl7_app.specs(hl7_deps, retry=FAST_RETRY, tuning=FAST_TUNING),
             *extraction_app.specs(pipeline.agent_clients, wb.pools, retry=FAST_RETRY, tuning=FAST_TUNING),
             *triage_app.specs(wb.pools, pipeline.agent_clients, wb.settings, retry=FAST_RETRY, tuning=FAST_TUNING),
             *writeback_app.specs(wb.deps, retry=FAST_RETRY, tuning=FAST_TUNING),
             *hl7out_app.specs(out_deps, retry=FAST_RETRY, tuning=FAST_TUNING)]
    await ensure_stage_topics(wb.stack, Tenant(id=wb.tenant), specs)
    host = StageHost(wb.settings, specs, port=0, host="127.0.0.1", tenants=[wb.tenant], resources=[hl7_deps])
    await host.start()
    listener = MllpServer(Hl7Pipeline(registry, crypto.Keyring(wb.pools), pipeline.publishers,
                                      PatientKeys(pipeline.secrets)), "127.0.0.1", 0)
    await listener.start()
    stop = asyncio.Event()
    runner = asyncio.create_task(host.run(stop))
    try:
        assert await send_all(listener.port, [mdm(n, f"MRN{n:04d}") for n in range(NOTES)]) == ["AA"] * NOTES
        await receiver.wait(lambda r: len(r.accepted()) >= NOTES, timeout=90)
        await wait_idle(wb.stack, wb.tenant, specs, timeout=60)
        stored = await _stored_notes(wb)
        # an engine that routes results to every subscriber sends Vigil's own ORUs back to its feed:
        # they are acknowledged and used for nothing (no note, no finding, no second result)
        echoed = [r.text.encode() for r in receiver.received]
        assert await send_all(listener.port, echoed) == ["AA"] * NOTES
        await wait_idle(wb.stack, wb.tenant, specs, timeout=60)
        assert await _stored_notes(wb) == stored == NOTES
    finally:
        stop.set()
        await runner
        await listener.stop()
        await host.stop()
        await out_deps.close()
        await receiver.stop()
    assert len(receiver.received) == NOTES and all(c == 1 for c in receiver.accepted().values())
    by_mrn = {}
    for got in receiver.received:
        msg = hl7.parse(got.text)
        assert str(msg.segment("MSH")[9]) == "ORU^R01^ORU_R01"
        pid3 = msg.segment("PID")[3][0]
        assert (str(pid3[3]), str(pid3[4])) == ("NW", "MR"), "the identifier as the feed sent it"
        obx = {str(o[3][0][0]): msg.unescape(str(o[5])) for o in msg.segments("OBX")}
        assert obx["finding"].startswith("colitis^") and obx["ctcae-grade"] == "2"
        assert "immune-mediated colitis" in obx["evidence-quote"]
        assert "AI-generated and unverified" in msg.unescape(str(msg.segment("NTE")[3]))
        by_mrn[str(pid3[0])] = obx["source-note"]
        decision_id = str(msg.segment("OBR")[3][0][0])
        assert got.control_id == control_id(wb.tenant, decision_id)
    assert by_mrn == {f"MRN{n:04d}": f"DOC-{n:05d}" for n in range(NOTES)}
    for pid in patients:  # the profile takes no FHIR writes: nothing of Vigil's in the EHR
        assert await client.search("Task", {"patient": pid}) == []
        assert await client.search("Observation", {"patient": pid}) == []
    assert await client.search("Provenance", {}) == [] and await client.search("Device", {}) == []
