"""The 12 public HL7 v2 samples: parse, validate, map to valid FHIR R4, acknowledge."""
from __future__ import annotations

import base64
from pathlib import Path

import pytest

from services.ingest.hl7.ack import build_ack
from services.ingest.hl7.errors import Hl7Error
from services.ingest.hl7.mapping import map_message
from services.ingest.hl7.parse import parse

SAMPLES = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "hl7v2"

#: sample -> (resource type, identifier system suffix, identifier value) for accepted ones,
#: or the error location for the ones refused (no TX/FT note text).
EXPECTED = {
    "ADT-A01-01.hl7": ("Encounter", "ghhsfacility:visit", "40007716"),
    "ADT-A03-01.hl7": ("Encounter", "ghhsfacility:visit", "40007716"),
    "ADT-A08-01.hl7": ("Encounter", "ghhsfacility:visit", "40007716"),
    "SIU-S12-01.hl7": ("Appointment", "ghhsfacility:appointment", "12345"),
    "SIU-S14-01.hl7": ("Appointment", "ghhsfacility:appointment", "12345"),
    "SIU-S15-01.hl7": ("Appointment", "ghhsfacility:appointment", "12345"),
    "MDM-T02-02.hl7": ("DocumentReference", "xyzhospital:document", "1.2.840.317.5947431.51.20080131160038"),
    "MDM-T02-03.hl7": ("DocumentReference", "sfac:document", "2RWRVAJ627408"),
    "LRI_2.0-NG_CBC_Typ_Message.hl7": ("DocumentReference", "nist-lab-facility:message", "NIST-LRI-NG-002.00"),
    "MDM-T02-01.hl7": "OBX-2",
    "ORU-R01-01.hl7": "OBX-2",
    "LAB-ORU-1.hl7": "OBX-2",
}


def sample(name: str) -> bytes:
    path = SAMPLES / name
    if not path.exists():
        pytest.skip(f"sample {path} not available")
    return path.read_bytes()


def test_every_sample_is_covered():
    if not SAMPLES.exists():
        pytest.skip("samples not available")
    assert {p.name for p in SAMPLES.glob("*.hl7")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample_maps_or_is_refused_readably(name):
    msg = parse(sample(name))
    expected = EXPECTED[name]
    if isinstance(expected, str):
        with pytest.raises(Hl7Error) as info:
            map_message(msg)
        assert info.value.ack_code == "AE" and info.value.location == expected
        assert "TX and FT" in str(info.value)
        ack = parse(build_ack(msg.header, "AE", info.value))
        assert ack.get("MSA", 1) == "AE" and ack.get("MSA", 2) == msg.header.control_id
        assert ack.get("ERR", 3) == "102"
        return
    resource_type, suffix, value = expected
    mapping = map_message(msg)
    primary = mapping.primary
    assert primary.resource_type == resource_type
    assert primary.system == f"urn:vigil:hl7:{suffix}" and primary.value == value
    assert primary.body["identifier"] == [{"system": primary.system, "value": value}]
    assert mapping.patient.resource_type == "Patient" and mapping.patient.value == msg.get("PID", 3, comp=1)
    ref = primary.body.get("subject") or primary.body["participant"][0]["actor"]
    assert ref == {"reference": mapping.patient.full_url}
    ack = parse(build_ack(msg.header, "AA"))
    assert ack.get("MSA", 1) == "AA" and ack.get("MSA", 2) == msg.header.control_id
    assert not ack.has("ERR")


def test_bom_and_lf_are_normalized():
    raw = sample("LRI_2.0-NG_CBC_Typ_Message.hl7")
    assert raw.startswith(b"\xef\xbb\xbf") and b"\r" not in raw
    msg = parse(raw)
    assert msg.text.startswith("MSH|") and "\n" not in msg.text
    assert msg.header.control_id == "NIST-LRI-NG-002.00"
    assert msg.segment_ids().count("OBX") == 28


def test_mdm_note_text_is_the_tx_lines_in_order():
    mapping = map_message(parse(sample("MDM-T02-03.hl7")))
    attachment = mapping.primary.body["content"][0]["attachment"]
    assert attachment["contentType"] == "text/plain; charset=utf-8"
    text = base64.b64decode(attachment["data"]).decode("utf-8")
    lines = text.split("\n")
    assert len(lines) == 29
    assert lines[0] == "Toilet cylinder crackers model step-mother visor opening communication"
    assert lines[7] == "Stopsign"
    body = mapping.primary.body
    assert body["docStatus"] == "preliminary"  # TXA-17 IP
    assert body["date"] == "2021-08-03T00:00:00+02:15"  # TXA-6
    assert body["type"]["coding"][0] == {"system": "http://loinc.org", "code": "18842-5", "display": "Discharge summary"}


def test_oru_note_text_takes_only_tx_results():
    mapping = map_message(parse(sample("LRI_2.0-NG_CBC_Typ_Message.hl7")))
    text = base64.b64decode(mapping.primary.body["content"][0]["attachment"]["data"]).decode()
    assert len(text.split("\n")) == 3 and "105600" not in text  # NM values are not note text
    assert mapping.primary.body["type"]["coding"][0]["code"] == "57021-8"  # OBR-4, LOINC


def test_adt_discharge_finishes_the_same_encounter():
    admit = map_message(parse(sample("ADT-A01-01.hl7"))).primary
    discharge = map_message(parse(sample("ADT-A03-01.hl7"))).primary
    assert admit.search == discharge.search and admit.full_url == discharge.full_url
    assert admit.body["status"] == "in-progress" and discharge.body["status"] == "finished"
    assert discharge.body["period"] == {"start": "2015-02-08T11:34:19+01:10", "end": "2015-02-09T11:34:19+01:10"}
    assert admit.mode == discharge.mode == "upsert"


def test_siu_cancellation_updates_the_booking():
    booked = map_message(parse(sample("SIU-S12-01.hl7"))).primary
    cancelled = map_message(parse(sample("SIU-S15-01.hl7"))).primary
    assert booked.search == cancelled.search
    assert booked.body["status"] == "booked" and cancelled.body["status"] == "cancelled"
    assert booked.body["start"] == "2021-09-24T09:30:00+02:15" and booked.body["end"] == "2021-09-24T10:20:00+02:15"


def test_patient_demographics_and_identifier_from_pid():
    patient = map_message(parse(sample("MDM-T02-03.hl7"))).patient
    body = patient.body
    assert body["identifier"][0] == {"system": "urn:vigil:hl7:sfac:patient:simulator-mrn", "value": "3196695816",
                                     "assigner": {"display": "SIMULATOR MRN"},  # PID-3.4 as sent
                                     "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                                          "code": "MRN"}]}}
    assert len(body["identifier"]) == 2
    assert body["gender"] == "male" and body["birthDate"] == "1930-01-22"
    assert body["name"] == [{"family": "Clark", "given": ["Frederick"]}]
    assert patient.mode == "create"


def test_oid_assigning_authority_becomes_urn_oid():
    patient = map_message(parse(sample("LRI_2.0-NG_CBC_Typ_Message.hl7"))).patient
    assert patient.system == "urn:vigil:hl7:nist-lab-facility:patient:nist-mpi"
    oru = parse(sample("ORU-R01-01.hl7"))
    from services.ingest.hl7.mapping.common import patient_identifiers
    assert patient_identifiers(oru)[0]["system"] == "urn:oid:2.16.840.1.114222.4.3.3.5.1.2"


def test_identifiers_are_deterministic():
    first = map_message(parse(sample("MDM-T02-02.hl7")))
    second = map_message(parse(sample("MDM-T02-02.hl7")))
    assert first.primary.full_url == second.primary.full_url
    assert first.primary.body == second.primary.body
