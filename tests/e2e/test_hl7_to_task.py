"""An HL7 feed through the whole path while the EHR misbehaves: every note ends as exactly one Task.

MDM^T02 notes over MLLP -> AA on durable receipt (the EHR is not called) -> hl7-inbound -> the
hl7 stage (Vigil's document store, patient resolved by identifier) -> extraction (GetNote from the
store) -> triage -> writeback -> one Task per note in the inbox, its source note referred to by the
HL7 document identifier. The EHR is in outage (503) or silently drops writes while the feed is sent.
"""
from __future__ import annotations

import asyncio
import dataclasses
import os

import pytest
from hl7.mllp import open_hl7_connection

from services.core.bus import RetryPolicy, ensure_stage_topics
from services.core.bus.service import StageHost
from services.core.tenancy import Registry, Tenant
from services.extraction import app as extraction_app
from services.ingest.hl7.patientkey import PatientKeys
from services.ingest.hl7stage import app as hl7_app
from services.ingest.hl7stage.deps import Hl7Deps
from services.ingest.mllp.pipeline import Hl7Pipeline
from services.ingest.mllp.server import MllpServer
from services.ingest.hl7.parse import parse
from services.core import crypto
from services.triage import app as triage_app
from services.writeback import app as writeback_app
from services.writeback import resources as R
from tests.e2e.test_note_to_task import pipeline  # noqa: F401  (the fixture)
from tests.fixtures.writeback import FAST_TUNING

FACILITY = "NORTHWING"
#: How long the EHR misbehaves (``VIGIL_TEST_EHR_FAULT_S=60`` for the full minute; the suite uses 10 s).
FAULT_S = float(os.environ.get("VIGIL_TEST_EHR_FAULT_S", "10"))
MRN_SYSTEM = "urn:oid:2.16.840.1.113883.3.9999.7"
NOTES = 4
#: Long enough to ride out the EHR's trouble: 2 quick tries, then 1 + 2 + 4 + 8 s and 8 s more per 8 s of fault.
OUTAGE_RETRY = RetryPolicy(quick_attempts=2, quick_wait_initial_s=0.05, quick_wait_max_s=0.2,
                           retry_backoff_s=(1.0, 2.0, 4.0, 8.0) + (8.0,) * (1 + int(FAULT_S // 8)))
TEXT = ("Oncology clinic. Cycle {n} of pembrolizumab for metastatic melanoma.~"
        "Assessment: grade 2 immune-mediated colitis, 6 loose stools a day.~"
        "Plan: hold pembrolizumab, start prednisone 1 mg/kg.")


def mdm(n: int, mrn: str) -> bytes:
    return ("\r".join([
        f"MSH|^~\\&|NOTES|{FACILITY}|VIGIL|VIGIL|20261120101500||MDM^T02^MDM_T02|F{n:05d}|P|2.5.1",
        "EVN|T02|20261120101500",
        f"PID|1||{mrn}^^^NW^MR||Feedfollow^Pat||19600101|F",
        f"TXA|1|PN|TX|20261120101000||20261120101500||||||DOC-{n:05d}|||||AU",
        f"OBX|1|TX|11506-3^Progress note^LN||{TEXT.format(n=n)}||||||F"]) + "\r").encode()


async def send_all(port: int, blocks: list[bytes]) -> list[str]:
    reader, writer = await open_hl7_connection("127.0.0.1", port, encoding="utf-8")
    codes = []
    try:
        for block in blocks:
            writer.writeblock(block)
            await writer.drain()
            codes.append(parse(await asyncio.wait_for(reader.readblock(), 10)).get("MSA", 1))
    finally:
        writer.close()
        await writer.wait_closed()
    return codes


@pytest.mark.parametrize("fault", [{"outage_s": FAULT_S}, {"drop_writes": True}], ids=["outage", "drop-writes"])
async def test_hl7_feed_during_ehr_trouble_ends_as_one_task_per_note(pipeline, wb_tenant, fault):  # noqa: F811
    wb, client = wb_tenant, pipeline.client
    entry = Registry.load(wb.path).get(wb.tenant)
    Registry(wb.path, [dataclasses.replace(entry, hl7_facilities=(FACILITY,), settings={
        **entry.settings, "hl7_patient_identifier_system": MRN_SYSTEM})]).save()
    registry = Registry.load(wb.path)
    patients = []
    for n in range(NOTES):
        pid = (await client.create({"resourceType": "Patient", "identifier": [
            {"system": MRN_SYSTEM, "value": f"MRN{n:04d}"}], "name": [{"family": "Feedfollow"}]})).id
        onc = (await client.create({"resourceType": "Practitioner", "name": [{"family": f"Onco{n}"}]})).id
        await client.create({"resourceType": "CareTeam", "status": "active", "subject": {"reference": f"Patient/{pid}"},
                             "participant": [{"role": [{"coding": [{"system": "http://snomed.info/sct",
                                                                    "code": "309295000"}]}],
                                              "member": {"reference": f"Practitioner/{onc}"}}]})
        patients.append(pid)
    deps = Hl7Deps(wb.settings, pipeline.secrets, registry=registry, clients={wb.tenant: client}, migrate=False)
    specs = [*hl7_app.specs(deps, retry=OUTAGE_RETRY, tuning=FAST_TUNING),
             *extraction_app.specs(pipeline.agent_clients, wb.pools, retry=OUTAGE_RETRY, tuning=FAST_TUNING),
             *triage_app.specs(wb.pools, pipeline.agent_clients, wb.settings, retry=OUTAGE_RETRY, tuning=FAST_TUNING),
             *writeback_app.specs(wb.deps, retry=OUTAGE_RETRY, tuning=FAST_TUNING)]
    await ensure_stage_topics(wb.stack, Tenant(id=wb.tenant), specs)
    host = StageHost(wb.settings, specs, port=0, host="127.0.0.1", tenants=[wb.tenant], resources=[deps])
    await host.start()
    listener = MllpServer(Hl7Pipeline(registry, crypto.Keyring(wb.pools), pipeline.publishers,
                                      PatientKeys(pipeline.secrets)), "127.0.0.1", 0)
    await listener.start()
    stop = asyncio.Event()
    runner = asyncio.create_task(host.run(stop))
    try:
        loop = asyncio.get_running_loop()
        await wb.ehr.admin.set_faults(wb.tenant, **fault)
        started = loop.time()
        try:
            # The feed runs through the whole fault window, a note at a time, each waiting for its ACK.
            codes = []
            for n in range(NOTES):
                codes += await send_all(listener.port, [mdm(n, f"MRN{n:04d}")])
                await asyncio.sleep(FAULT_S / (NOTES + 1))
            assert codes == ["AA"] * NOTES  # acknowledged while the EHR is in trouble
            # the sender resends the whole batch (a reconnecting interface engine does): still one each
            assert await send_all(listener.port, [mdm(n, f"MRN{n:04d}") for n in range(NOTES)]) == ["AA"] * NOTES
            await asyncio.sleep(max(0.0, FAULT_S - (loop.time() - started)))  # the fault lasts its full length
        finally:
            await wb.ehr.admin.clear_faults(wb.tenant)

        async def one_task_each():
            found = [await client.search("Task", {"patient": p}) for p in patients]
            return found if all(found) else None
        found = await wb.wait(one_task_each, timeout=90 + 2 * FAULT_S, interval=0.5)
        await asyncio.sleep(2.0)  # a duplicate would land now
        found = [await client.search("Task", {"patient": p}) for p in patients]
        assert [len(f) for f in found] == [1] * NOTES
        for n, (task,) in enumerate(found):
            [source] = R.task_inputs(task, "source-note")
            assert source["identifier"]["value"] == f"DOC-{n:05d}" and "reference" not in source
            assert "immune-mediated colitis" in R.task_inputs(task, "evidence-quote")[0]
        # nothing of the feed was written into the EHR: the notes live in Vigil's document store
        assert await client.search("DocumentReference", {"_count": "5"}) == []
    finally:
        stop.set()
        await runner
        await listener.stop()
        await host.stop()
