"""The hl7 stage on the real broker, PostgreSQL and EHR sandbox: stored messages become notes in
Vigil's document store, lab-result events and the patient index; an EHR outage delays, never loses."""
from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.core.bus import RetryPolicy
from services.core.bus.service import StageHost
from services.core.bus.topics import ensure_stage_topics
from services.ingest.hl7stage import labs
from services.ingest.hl7stage.app import specs
from services.ingest.hl7stage.deps import Hl7Deps
from services.ingest.mllp.server import MllpServer
from services.ingest.store import documents, patients as patient_index
from services.tools.document_store import DocumentStore
from services.core.events import header_value
from tests.integration.ingest.conftest import EHR_MRN_SYSTEM, read_topic
from tests.integration.ingest.test_ingest_mllp import sample, send

REPO = Path(__file__).resolve().parents[3]
QUICK = RetryPolicy(quick_attempts=1, quick_wait_initial_s=0.05, quick_wait_max_s=0.1, retry_backoff_s=(0.5, 1, 2))
MDM_MRN = "3196695816"  # PID-3 of MDM-T02-03


@contextlib.asynccontextmanager
async def running(ingest, secrets, retry: RetryPolicy = QUICK):
    deps = Hl7Deps(ingest.settings, secrets, registry=ingest.registry,
                   clients={ingest.tenant.id: ingest.ehr.client}, migrate=False)
    stage = specs(deps, retry=retry)
    await ensure_stage_topics(ingest.settings, ingest.tenant, stage)
    host = StageHost(ingest.settings, stage, port=0, host="127.0.0.1", tenants=[ingest.tenant.id], resources=[deps])
    await host.start()
    srv = MllpServer(ingest.pipeline, "127.0.0.1", 0)
    await srv.start()
    stop = asyncio.Event()
    task = asyncio.create_task(host.run(stop))
    try:
        yield srv
    finally:
        await srv.stop()
        stop.set()
        await task
        await host.stop()


async def seed_patient(ingest, value: str) -> str:
    result = await ingest.ehr.client.create({"resourceType": "Patient", "identifier": [
        {"system": EHR_MRN_SYSTEM, "value": value}], "name": [{"family": "Clark"}]})
    return result.id


async def test_note_goes_to_the_store_and_to_extraction_by_reference(ingest, secrets):
    patient = await seed_patient(ingest, MDM_MRN)
    async with running(ingest, secrets) as srv:
        [ack] = await send(srv.port, [sample("MDM-T02-03.hl7")])
        assert ack.get("MSA", 1) == "AA"
        [event] = await ingest.events("ehr-events", want=1, timeout=30)
    assert event.data["resourceType"] == "DocumentReference" and event.data["source"] == "store"
    assert event.data["origin"] == "hl7" and event.data["patient"] == patient and event.key == patient
    assert "text" not in event.data
    note = await DocumentStore(ingest.pools).read(ingest.tenant.id, event.data["id"], int(event.data["versionId"]))
    assert note.text.startswith("Toilet cylinder crackers") and note.patient_id == patient
    assert note.identifier_value == "2RWRVAJ627408"
    # The EHR got nothing written: the note lives in Vigil's store only.
    assert await ingest.ehr.client.search("DocumentReference", {"_count": "10"}) == []
    async with ingest.pools.tx(ingest.tenant.id, readonly=True) as conn:
        row = await conn.fetchrow("SELECT text_sealed FROM ingest_documents WHERE tenant = $1", ingest.tenant.id)
    assert b"Toilet" not in bytes(row["text_sealed"])


async def test_labs_no_text_notes_and_adt_are_used_and_counted(ingest, secrets):
    await seed_patient(ingest, "987654321")  # MDM-T02-01 / -02 (XYZHOSPITAL)
    await seed_patient(ingest, "14")  # ORU-R01-01
    nist_patient = await seed_patient(ingest, "PATID1234")  # the NIST CBC, whose 3 TX results are text
    names = ["LRI_2.0-NG_CBC_Typ_Message.hl7", "MDM-T02-01.hl7", "ORU-R01-01.hl7", "ADT-A01-01.hl7",
             "LAB-ORU-1.hl7"]
    async with running(ingest, secrets) as srv:
        acks = await send(srv.port, [sample(n) for n in names])
        assert [a.get("MSA", 1) for a in acks] == ["AA"] * len(names)
        lab_events = await ingest.events(labs.LAB_RESULTS, want=35, timeout=30, settle=2)
        for _ in range(100):  # the no-text notes are written by the same stage; wait for the last one
            async with ingest.pools.tx(ingest.tenant.id, readonly=True) as conn:
                counts = await documents.counts(conn, ingest.tenant.id)
                indexed = await patient_index.count(conn, ingest.tenant.id)
            if counts.get("no-text") == 2 and indexed == 5:
                break
            await asyncio.sleep(0.2)
        notes = await ingest.events("ehr-events", want=1, timeout=10, settle=1)
    assert counts == {"no-text": 2, "text": 1}, counts
    assert indexed == 5  # NIST, XYZHOSPITAL, IA, GHHS, LAB-ORU-1's patient
    # Only the note with text goes to extraction: the CBC's comments. PDF / reference-only notes are kept.
    assert [(n.data["patient"], n.data["source"]) for n in notes] == [(nist_patient, "store")]
    by_message: dict = {}
    for e in lab_events:
        by_message.setdefault(e.data["message"]["controlId"], []).append(e)
        assert e.key == e.data["patient"] and e.data["patient"].startswith("pk-")
    nist = sorted(by_message["NIST-LRI-NG-002.00"], key=lambda e: e.data["index"])
    assert len(nist) == 25 and {e.data["valueType"] for e in nist} == {"NM", "CWE"}
    first = await labs.open_lab(ingest.keyring, ingest.tenant.id, nist[0].data)
    assert first["value"] == 4.41 and first["unit"] == "10*6/uL" and first["code"] == "26453-1"
    assert first["referenceRange"] == "4.3 to 6.2" and first["abnormalFlags"] == "N"
    assert nist[0].data["observedAt"].startswith("2011-01-03T")
    assert "4.41" not in str(nist[0].data)
    assert {e.data["valueType"] for e in by_message["2.16.840.1.114222.4.3.3.5.1.2-20120314235954.325"]} == \
        {"CWE", "NM"}
    assert len(by_message["182"]) == 10  # LAB-ORU-1, routed by its sending application
    async with ingest.pools.tx(ingest.tenant.id, readonly=True) as conn:
        rows = await conn.fetch("SELECT control_id, content_types FROM ingest_documents WHERE tenant = $1 "
                                "ORDER BY control_id", ingest.tenant.id)
    types = {r["control_id"]: set(r["content_types"]) for r in rows}
    assert types["PS1-20080131160038"] == {"application/pdf"}
    assert types["2.16.840.1.114222.4.3.3.5.1.2-20120314235954.325"] == {"reference", "application/octet-stream"}

    # The platform team sees the same from the command line (its own process).
    ingest.registry.save()
    env = dict(os.environ, VIGIL_TENANTS_FILE=str(ingest.registry.path), VIGIL_ENV="test",
               VIGIL_POSTGRES_DSN=ingest.settings.postgres_dsn)
    done = subprocess.run([sys.executable, "-m", "services.cli", "hl7", "status", "--tenant", ingest.tenant.id,
                           "--json"], env=env, capture_output=True, text=True, timeout=60, cwd=str(REPO))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["messages"] == 5 and report["notes"] == {"no-text": 2, "text": 1} and report["patients"] == 5
    assert {tuple(sorted(n["contentTypes"])) for n in report["withoutText"]} == {
        ("application/pdf",), ("application/octet-stream", "reference")}
    assert "987654321" not in done.stdout and "PATID1234" not in done.stdout


async def test_ehr_outage_delays_the_note_and_loses_nothing(ingest, secrets):
    patient = await seed_patient(ingest, MDM_MRN)
    await ingest.ehr.admin.set_faults(ingest.tenant.id, outage_s=4)
    async with running(ingest, secrets) as srv:
        [ack] = await send(srv.port, [sample("MDM-T02-03.hl7")])
        assert ack.get("MSA", 1) == "AA"  # answered while the EHR is down
        events = await ingest.events("ehr-events", want=1, timeout=40, settle=2)
    assert [e.data["patient"] for e in events] == [patient]


async def test_patient_the_ehr_does_not_know_is_dead_lettered_readably(ingest, secrets):
    async with running(ingest, secrets) as srv:
        [ack] = await send(srv.port, [sample("MDM-T02-03.hl7")])
        assert ack.get("MSA", 1) == "AA"
        [dead] = await read_topic(ingest.settings, ingest.topic("dlq"), 1, timeout=30, settle=0)
    assert header_value(dead.headers, "dlq-stage") == "hl7"
    assert header_value(dead.headers, "dlq-error-code") == "patient_not_in_ehr"
    assert MDM_MRN.encode() not in dead.value  # the dead letter keeps the sealed message, not its content
    assert await ingest.events("ehr-events", want=1, timeout=1, settle=0) == []


async def test_copy_to_ehr_survives_dropped_writes(ingest, secrets):
    tenant = dataclasses.replace(ingest.tenant, settings={**ingest.tenant.settings, "hl7_copy_to_ehr": True})
    ingest.registry.put(tenant)
    await ingest.ehr.admin.set_faults(ingest.tenant.id, drop_writes=True)
    async with running(ingest, secrets) as srv:
        [ack] = await send(srv.port, [sample("MDM-T02-03.hl7")])
        assert ack.get("MSA", 1) == "AA"
        await asyncio.sleep(1.5)  # writes are acknowledged and dropped meanwhile: the stage must retry
        await ingest.ehr.admin.clear_faults(ingest.tenant.id)
        events = await ingest.events("ehr-events", want=2, timeout=30, settle=2)
    docs = await ingest.ehr.client.search("DocumentReference", {"identifier": "urn:vigil:hl7:sfac:document|2RWRVAJ627408"})
    assert len(docs) == 1
    text = base64.b64decode(docs[0]["content"][0]["attachment"]["data"]).decode()
    assert text.startswith("Toilet cylinder crackers")
    doc_events = [e for e in events if e.data["resourceType"] == "DocumentReference"]
    assert len(doc_events) == 1 and doc_events[0].data["id"] == docs[0]["id"]
    assert doc_events[0].data.get("source", "ehr") == "ehr"
