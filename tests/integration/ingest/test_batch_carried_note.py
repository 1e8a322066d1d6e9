"""A batch run's event carries its note, sealed: read from the broker it shows no note text, it
opens with the tenant's key only, and extraction builds from it the findings event it would
build from the document store (the tools' own read of the stored version). A note longer than
``CARRIED_NOTE_MAX_CHARS`` travels by reference only; a carried note whose seal is broken does
not open (a dead letter, not a wrong note)."""
from __future__ import annotations

import json
import types

import pytest

from services.core import evidence
from services.core.crypto import DecryptionError
from services.extraction.handler import Extraction, findings_data
from services.ingest.batch import job as batch_job
from services.ingest.hl7.patientkey import PatientKeys
from services.tools.document_store import DocumentStore
from services.tools.get_note import GetNote
from tests.fixtures.batch_source import JsonlSource
from tests.integration.ingest.conftest import read_topic
from vigil.v1 import inference_pb2

pytestmark = pytest.mark.xdist_group("batch-job")

NOTES = [
    {"id": "c1", "text": "Assessment: grade 2 colitis on pembrolizumab, started budesonide.", "patient_id": "p1",
     "note_time": "2025-03-11T10:00:00+02:00", "note_type": "Oncology progress note"},
    {"id": "c2", "text": "Follow-up. No diarrhea. TSH 7.2, likely thyroiditis.", "mrn": "MRN-77",
     "note_time": "2025-04-01T08:30:00Z"},
    {"id": "c3", "text": "Long note. " + "Stable disease on nivolumab, no new symptoms. " * 40, "patient_id": "p3"},
]


async def test_the_event_carries_the_note_sealed_and_extraction_reads_it_as_the_store_holds_it(
        ingest, tmp_path, monkeypatch):
    tenant = ingest.tenant.id
    long_text = NOTES[2]["text"]
    monkeypatch.setattr(evidence, "CARRIED_NOTE_MAX_CHARS", len(long_text) - 1)
    path = tmp_path / "notes.jsonl"
    path.write_text("".join(json.dumps(n) + "\n" for n in NOTES))
    job = batch_job.BatchJob(tenant, "carried", "jsonl", JsonlSource(path), pools=ingest.pools, keyring=ingest.keyring,
                             publishers=ingest.publishers, patient_keys=PatientKeys(ingest.pools.secrets))
    row = await job.run()
    assert (row.stored, row.published) == (3, 3)

    records = await read_topic(ingest.settings, ingest.topic("batch-events"), 3, timeout=30, settle=1.0)
    assert len(records) == 3
    for record in records:  # no note text readable on the broker
        for note in NOTES:
            assert note["text"][:40].encode() not in record.value
    events = await ingest.events("batch-events", want=3)
    by_id = {e.data["id"]: e for e in events}
    store = DocumentStore(ingest.pools, ingest.keyring)
    get_note = GetNote(tenants=None, fhir=None, store=store)
    extraction = Extraction(clients=None, keyring=ingest.keyring)  # no tools call may happen
    result = inference_pb2.ExtractResponse(engine="rules", engine_version="rules-test")
    carried = 0
    for event in by_id.values():
        stored = await get_note._from_store(types.SimpleNamespace(id=tenant), event.data["id"],
                                            event.data["versionId"])
        if stored.text == long_text:
            assert "note" not in event.data  # too long to carry: read through tools.GetNote
            continue
        carried += 1
        note = await extraction._carried(tenant, event.data, event.data["note"])
        assert note.text == stored.text
        assert findings_data(event, note, result) == findings_data(event, stored, result)
    assert carried == 2
    timed = next(e for e in by_id.values() if e.data.get("note", {}).get("time", "").startswith("2025-03-11"))
    assert timed.data["note"]["time"] == "2025-03-11T08:00:00+00:00"  # as the store gives it back (UTC)

    # sealed under the note purpose: the quote purpose does not open it; a broken seal is a DecryptionError
    sealed = timed.data["note"]["textSealed"]
    with pytest.raises(DecryptionError):
        await evidence.open_text(ingest.keyring, tenant, sealed)
    broken = sealed[:-8] + ("A" * 8 if not sealed.endswith("A" * 8) else "B" * 8)
    with pytest.raises(DecryptionError):
        await extraction._carried(tenant, timed.data, {**timed.data["note"], "textSealed": broken})
