"""No PHI in logs or metric labels: a slice of the pipeline runs on real data with every log
line captured, and the capture is scanned for the synthetic patients' PHI.

The tenant's EHR is seeded with the Synthea bundle and the oncology panel (patients on
immunotherapy with their notes); every seeded note goes through extraction (tools + inference
over loopback gRPC) and triage (CareTeam routing through tools) on the real broker, Redis and
PostgreSQL, at DEBUG level, alongside the EHR sandbox serving those reads. The scan covers
structlog output, every stdlib logger (grpc, aiokafka, uvicorn, ...) and the Prometheus
exposition, for the patients' names, birth dates, phone numbers, addresses and MRNs, snippets
of every note and every evidence quote the agents produced.
"""
from __future__ import annotations

import io
import json
import logging

import pytest
import structlog
from prometheus_client import REGISTRY, generate_latest

from services.core import logging as vlogging
from services.core.fhir import attachment_text
from services.extraction import app as extraction_app
from services.triage import app as triage_app
from tests.fixtures.phi import note_snippets, phi_markers_from_bundle, scan_for_phi
from tests.integration.agents.conftest import (  # noqa: F401  (fixtures)
    FAST_RETRY, FAST_TUNING, agents, grpc_settings, provisioned,
)
from tests.integration.agents.notes import changed


@pytest.fixture
def captured_logs():
    """Every log line of the test (structlog and stdlib, DEBUG and up) into one buffer."""
    buffer = io.StringIO()
    root = logging.getLogger()
    saved_structlog = structlog.get_config()
    saved_handlers, saved_level = root.handlers[:], root.level
    saved_levels = {name: logging.getLogger(name).level for name in vlogging.NOISY_LIBRARIES}
    handler = logging.StreamHandler(buffer)
    handler.setLevel(logging.DEBUG)
    root.addHandler(handler)
    vlogging.configure("debug", stream=buffer)
    root.setLevel(logging.DEBUG)
    try:
        yield buffer
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        for name, level in saved_levels.items():
            logging.getLogger(name).setLevel(level)
        structlog.configure(**saved_structlog)


async def _seeded_markers(client, shared_data) -> tuple[list[tuple[str, str]], list[dict]]:
    """PHI markers of the tenant's patients and notes, and the notes themselves."""
    patients = await client.search("Patient", {"_count": "200"})
    notes = await client.search("DocumentReference", {"_count": "200"})
    markers = phi_markers_from_bundle({"entry": [{"resource": r} for r in patients + notes]})
    markers += phi_markers_from_bundle(json.loads((shared_data / "synthea" / "sample_complete_patient.json").read_text()))
    return markers, notes


async def test_pipeline_slice_logs_no_phi(agents, shared_data, captured_logs):
    client = agents.ehr.client
    summary = await agents.ehr.seed(notes=8)
    markers, notes = await _seeded_markers(client, shared_data)
    assert len(notes) >= 8 and sum(kind == "name" for _, kind in markers) >= 4, summary
    events = [changed(agents.tenant, "DocumentReference", n["id"], n["meta"]["versionId"],
                      n["subject"]["reference"].split("/")[-1]) for n in notes if n.get("subject")]
    specs = (extraction_app.specs(agents.clients, agents.pools, retry=FAST_RETRY, tuning=FAST_TUNING)
             + triage_app.specs(agents.pools, agents.clients, agents.settings, retry=FAST_RETRY, tuning=FAST_TUNING))
    await agents.publish("ehr-events", events)
    async with agents.host(specs):
        found = await agents.read("findings", len(events), settle=1.0)
        actions = await agents.read("actions", 1, settle=2.0)
    assert len(found) == len(events), "every seeded note produced its findings event"
    quotes = [(f["quote"], "quote") for e in await agents.opened(found) for f in e.data["findings"]]
    assert quotes and actions, "the oncology notes yielded findings and triage acted on them"
    texts = [attachment_text(c["attachment"]) for n in notes for c in n.get("content", [])]
    markers += quotes + [(s, "note") for t in texts for s in note_snippets(t)]

    logs = captured_logs.getvalue()
    assert '"event"' in logs and agents.tenant in logs, "the capture holds the run's structured logs"
    hits = scan_for_phi(logs, markers)
    assert not hits, "PHI in logs:\n" + "\n".join(f"line {h.line} [{h.kind}]: {h.excerpt}" for h in hits[:20])
    metrics = generate_latest(REGISTRY).decode()
    assert agents.tenant in metrics, "the stages exported metrics for the tenant"
    hits = scan_for_phi(metrics, markers)
    assert not hits, "PHI in metric labels:\n" + "\n".join(f"[{h.kind}]: {h.excerpt}" for h in hits[:20])
