"""SIU^S12 (new), SIU^S14 (modified), SIU^S15 (cancelled) -> Appointment.

Keyed by the placer appointment id (SCH-1, else the filler id SCH-2), so a booking, its
changes and its cancellation update one Appointment.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from services.ingest.hl7.datatypes import coding, to_instant
from services.ingest.hl7.errors import DATA_TYPE_ERROR, REQUIRED_FIELD_MISSING, error
from services.ingest.hl7.mapping.common import (MappedResource, Mapping, facility_of, identifier_system,
                                                map_patient, subject)
from services.ingest.hl7.parse import Message

V2_0276 = "http://terminology.hl7.org/CodeSystem/v2-0276"
#: SCH-25 filler status (HL7 table 0278) -> Appointment.status.
FILLER_STATUS = {"BOOKED": "booked", "PENDING": "pending", "CANCELLED": "cancelled", "COMPLETE": "fulfilled",
                 "NOSHOW": "noshow", "WAITLIST": "waitlist", "STARTED": "arrived", "DELETED": "entered-in-error",
                 "DC": "cancelled", "OVERBOOK": "booked", "BLOCKED": "booked"}
NEEDS_TIMES = ("booked", "pending", "arrived", "fulfilled", "noshow", "checked-in")
MINUTES = {"MIN": 1, "M": 1, "H": 60, "HR": 60, "S": 1 / 60}


def _end_from_duration(start: str, msg: Message) -> str | None:
    amount = msg.get("AIS", 7)
    unit = MINUTES.get(msg.get("AIS", 8, comp=1).upper())
    if not amount.replace(".", "", 1).isdigit() or unit is None:
        return None
    return (datetime.fromisoformat(start.replace("Z", "+00:00")) + timedelta(minutes=float(amount) * unit)).isoformat()


def map_appointment(msg: Message, tz: str | None) -> Mapping:
    if not msg.has("SCH"):
        raise error(REQUIRED_FIELD_MISSING, "SCH segment is required", "SCH")
    facility = facility_of(msg)
    placer, filler = msg.get("SCH", 1, comp=1), msg.get("SCH", 2, comp=1)
    if placer:
        system, value = identifier_system(facility, "appointment"), placer
    elif filler:
        system, value = identifier_system(facility, "appointment-filler"), filler
    else:
        raise error(REQUIRED_FIELD_MISSING, "appointment id (SCH-1 or SCH-2) is required", "SCH-1")
    patient = map_patient(msg, mode="upsert")
    trigger = msg.header.trigger
    status = "cancelled" if trigger == "S15" else FILLER_STATUS.get(msg.get("SCH", 25).upper().replace(" ", ""),
                                                                     "booked")
    start = to_instant(msg.get("TQ1", 7), tz) or to_instant(msg.get("AIS", 4), tz) or \
        to_instant(msg.get("SCH", 11, comp=4), tz)
    end = to_instant(msg.get("TQ1", 8), tz) or to_instant(msg.get("SCH", 11, comp=5), tz)
    if start and not end:
        end = _end_from_duration(start, msg)
    if status in NEEDS_TIMES and not (start and end):
        raise error(REQUIRED_FIELD_MISSING, "a booked appointment needs a start and end (TQ1-7, TQ1-8)", "TQ1-7")
    if start and end and end < start:
        raise error(DATA_TYPE_ERROR, "appointment ends before it starts", "TQ1-8")
    body: dict = {"resourceType": "Appointment", "identifier": [{"system": system, "value": value}],
                  "status": status,
                  "participant": [{"actor": subject(patient), "status": "accepted", "required": "required"}]}
    if start and end:
        body["start"], body["end"] = start, end
    service = coding(msg.get("AIS", 3, comp=1), msg.get("AIS", 3, comp=2), msg.get("AIS", 3, comp=3))
    if service:
        body["serviceType"] = [{"coding": [service]}]
    appointment_type = msg.get("SCH", 7, comp=1)  # appointment reason, table 0276
    if appointment_type:
        body["appointmentType"] = {"coding": [{"system": V2_0276, "code": appointment_type.upper()}]}
    resource = MappedResource("Appointment", system, value, body, mode="upsert")
    return Mapping(kind=msg.header.kind, patient=patient, resources=(resource,))
