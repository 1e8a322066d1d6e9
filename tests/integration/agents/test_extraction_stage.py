"""The extraction stage on the real broker, Redis, PostgreSQL, EHR sandbox and loopback gRPC."""
from __future__ import annotations

import hashlib

from prometheus_client import REGISTRY

from services.extraction import app as extraction_app

from tests.integration.agents.conftest import FAST_RETRY, FAST_TUNING
from tests.integration.agents.notes import COLITIS_G3, changed, doc_ref, patient_with_oncologist


async def test_note_event_becomes_one_findings_event_with_exact_offsets(agents):
    client = agents.ehr.client
    patient, _ = await patient_with_oncologist(client)
    created = await client.create(doc_ref(patient, "Draft note: no issues yet.\n"))
    updated = await client.update({**doc_ref(patient, COLITIS_G3), "id": created.id})
    events = [changed(agents.tenant, "DocumentReference", created.id, str(updated.version), patient, "update"),
              changed(agents.tenant, "Patient", patient, "1", patient),
              changed(agents.tenant, "Appointment", "appt-1", "1", patient)]
    specs = extraction_app.specs(agents.clients, agents.pools, retry=FAST_RETRY, tuning=FAST_TUNING)
    skipped_before = REGISTRY.get_sample_value("vigil_extraction_skipped_total",
                                               {"tenant": agents.tenant, "reason": "resource_type"}) or 0
    await agents.publish("ehr-events", events)
    async with agents.host(specs):
        out = await agents.read("findings", 1, settle=2.0)
    assert len(out) == 1, "exactly one findings event per note; other resource types produce nothing"
    assert out[0].data["findings"] and all("quote" not in f and f["quoteSealed"] for f in out[0].data["findings"])
    data = (await agents.opened(out))[0].data
    assert out[0].causationid == events[0].id and out[0].key == patient
    assert data["document"] == {"id": created.id, "versionId": str(updated.version)}
    assert data["patient"] == patient and data["engine"] == "rules" and data["engineVersion"]
    assert data["promptHash"] is None and data["noteTime"] == "2026-03-02T10:15:00Z"
    assert data["noteSha256"] == hashlib.sha256(COLITIS_G3.encode()).hexdigest()
    colitis = [f for f in data["findings"] if f["category"] == "colitis"]
    assert colitis, data["findings"]
    for f in data["findings"]:
        assert COLITIS_G3[f["start"]:f["end"]] == f["quote"]  # offsets into the exact version read
    assert colitis[0]["grade"] == 3
    skipped = REGISTRY.get_sample_value("vigil_extraction_skipped_total",
                                        {"tenant": agents.tenant, "reason": "resource_type"})
    assert skipped - skipped_before == 2
    assert await agents.read("dlq", 0, timeout=0.5) == []


async def test_tools_unavailable_is_retried_not_lost(agents):
    """UNAVAILABLE from tools is a RetryableError: the event goes to the retry topic and, once the
    service is back, yields its findings event."""
    client = agents.ehr.client
    patient, _ = await patient_with_oncologist(client)
    doc = await client.create(doc_ref(patient, COLITIS_G3))
    port = agents.tools.port
    await agents.tools.stop()
    specs = extraction_app.specs(agents.clients, agents.pools, retry=FAST_RETRY.__class__(
        quick_attempts=1, retry_backoff_s=(2.0, 2.0)), tuning=FAST_TUNING)
    await agents.publish("ehr-events", [changed(agents.tenant, "DocumentReference", doc.id, str(doc.version), patient)])
    async with agents.host(specs):
        retried = await agents.read(f"extraction.retry.1", 1, timeout=15)
        assert len(retried) == 1
        from services.tools import app as tools_app
        agents.tools = await tools_app.start(agents.settings, agents.clients.settings, address=f"127.0.0.1:{port}")
        out = await agents.read("findings", 1, timeout=20)
    assert len(out) == 1 and out[0].data["document"]["id"] == doc.id
