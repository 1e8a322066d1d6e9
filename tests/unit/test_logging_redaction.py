"""Log redaction: PHI-named fields never reach a log line (checked with the PHI scanner on real
Synthea patient data), and the scanner itself finds PHI that slips in another way."""
from __future__ import annotations

import base64
import io
import json

import pytest

from services.core.logging import PHI_FIELDS, configure, get_logger
from tests.fixtures.phi import note_snippets, phi_markers_from_bundle, scan_for_phi


@pytest.fixture
def bundle(shared_data) -> dict:
    return json.loads((shared_data / "synthea" / "sample_complete_patient.json").read_text())


@pytest.fixture
def captured():
    stream = io.StringIO()
    configure("debug", stream=stream)
    yield stream
    configure("info")


def _patient(bundle):
    return next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")


def _first_note(bundle) -> str:
    for e in bundle["entry"]:
        r = e["resource"]
        if r["resourceType"] == "DocumentReference":
            return base64.b64decode(r["content"][0]["attachment"]["data"]).decode()
    raise AssertionError("bundle has no note")


def test_markers_come_from_the_bundle(bundle):
    markers = dict(phi_markers_from_bundle(bundle))
    patient = _patient(bundle)
    assert markers[patient["name"][0]["family"]] == "name"
    assert markers[patient["birthDate"]] == "birthdate"
    assert sum(1 for kind in markers.values() if kind == "note") > 10


def test_phi_fields_are_redacted_top_level_and_nested(bundle, captured):
    patient, note = _patient(bundle), _first_note(bundle)
    full_name = f"{patient['name'][0]['given'][0]} {patient['name'][0]['family']}"
    log = get_logger("test")
    log.info("note.received", tenant="tnorth", event_id="e-1", text=note, patient_name=full_name,
             birthdate=patient["birthDate"])
    log.warning("extraction.done", tenant="tnorth", finding={"quote": note[:80], "grade": 2},
                evidence=[{"note_text": note[:200], "span": [0, 10]}])
    out = captured.getvalue()
    lines = [json.loads(line) for line in out.splitlines()]
    assert [l["event"] for l in lines] == ["note.received", "extraction.done"]
    assert lines[0]["tenant"] == "tnorth" and lines[0]["event_id"] == "e-1"   # context survives
    assert lines[0]["text"] == "[redacted]" and lines[0]["patient_name"] == "[redacted]"
    assert lines[1]["finding"] == {"quote": "[redacted]", "grade": 2}        # nested dicts too
    assert lines[1]["evidence"] == [{"note_text": "[redacted]", "span": [0, 10]}]
    assert scan_for_phi(out, phi_markers_from_bundle(bundle)) == []


def test_scanner_finds_phi_that_escapes_redaction(bundle, captured):
    patient, note = _patient(bundle), _first_note(bundle)
    log = get_logger("test")
    log.info(f"careless message about {patient['name'][0]['family']}")  # PHI in the event text itself
    log.info("careless", reason=note_snippets(note)[1].upper())          # PHI under an innocent key
    hits = scan_for_phi(captured.getvalue(), phi_markers_from_bundle(bundle))
    assert {h.kind for h in hits} == {"name", "note"}
    assert all(patient["name"][0]["family"].casefold() not in h.excerpt for h in hits)  # reports stay clean


def test_scanner_ignores_short_markers_and_matches_across_whitespace():
    assert scan_for_phi("id=abc", ["abc"]) == []
    hits = scan_for_phi("line one\nsaw  Severe\tColitis today", [("severe colitis", "note")])
    assert [(h.line, h.kind) for h in hits] == [(2, "note")]


def test_phi_field_names_cover_the_obvious():
    assert {"text", "note", "quote", "name", "birthdate", "mrn"} <= PHI_FIELDS
