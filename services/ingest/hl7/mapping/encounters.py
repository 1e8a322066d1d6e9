"""ADT^A01 (admit), ADT^A03 (discharge), ADT^A08 (update) -> Encounter (+ Patient).

The Encounter is keyed by the visit number (PV1-19), so the admit, updates and the
discharge of one visit all land on one Encounter (conditional update).
"""
from __future__ import annotations

from services.ingest.hl7.datatypes import to_datetime
from services.ingest.hl7.errors import REQUIRED_FIELD_MISSING, TABLE_VALUE_NOT_FOUND, error
from services.ingest.hl7.mapping.common import (MappedResource, Mapping, facility_of, identifier_system,
                                                map_patient, subject)
from services.ingest.hl7.parse import Message

ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
#: PV1-2 patient class (HL7 table 0004) -> Encounter.class (v3 ActCode).
PATIENT_CLASS = {"I": ("IMP", "inpatient encounter"), "O": ("AMB", "ambulatory"), "E": ("EMER", "emergency"),
                 "P": ("PRENC", "pre-admission"), "R": ("AMB", "ambulatory"), "B": ("IMP", "inpatient encounter"),
                 "N": ("AMB", "ambulatory")}
STATUS_BY_TRIGGER = {"A01": "in-progress", "A03": "finished"}


def map_encounter(msg: Message, tz: str | None) -> Mapping:
    if not msg.has("PV1"):
        raise error(REQUIRED_FIELD_MISSING, "PV1 segment is required", "PV1")
    patient_class = msg.get("PV1", 2).upper()
    if not patient_class:
        raise error(REQUIRED_FIELD_MISSING, "patient class (PV1-2) is required", "PV1-2")
    if patient_class not in PATIENT_CLASS:
        raise error(TABLE_VALUE_NOT_FOUND, "patient class (PV1-2) is not in HL7 table 0004", "PV1-2")
    patient = map_patient(msg, mode="upsert")
    facility = facility_of(msg)
    visit = msg.get("PV1", 19, comp=1)
    if visit:
        system, value = identifier_system(facility, "visit"), visit
    else:
        system, value = identifier_system(facility, "message"), msg.header.control_id
    start = to_datetime(msg.get("PV1", 44), tz)
    end = to_datetime(msg.get("PV1", 45), tz)
    trigger = msg.header.trigger
    if trigger == "A03" and not end:
        end = to_datetime(msg.get("EVN", 6), tz) or to_datetime(msg.get("EVN", 2), tz)
    if trigger == "A01" and not start:
        start = to_datetime(msg.get("EVN", 6), tz) or to_datetime(msg.get("EVN", 2), tz)
    status = STATUS_BY_TRIGGER.get(trigger) or ("finished" if end else "in-progress")
    code, display = PATIENT_CLASS[patient_class]
    body: dict = {"resourceType": "Encounter", "identifier": [{"system": system, "value": value}],
                  "status": status, "class": {"system": ACT_CODE, "code": code, "display": display},
                  "subject": subject(patient)}
    period = {k: v for k, v in (("start", start), ("end", end)) if v}
    if period.get("start") and period.get("end") and period["end"] < period["start"]:
        period.pop("end")
    if period:
        body["period"] = period
    resource = MappedResource("Encounter", system, value, body, mode="upsert")
    return Mapping(kind=msg.header.kind, patient=patient, resources=(resource,))
