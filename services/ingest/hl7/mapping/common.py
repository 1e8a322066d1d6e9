"""What a mapped message is, deterministic identifiers, and the Patient from PID."""
from __future__ import annotations

import uuid
from urllib.parse import quote
from dataclasses import dataclass, field

from services.ingest.hl7.datatypes import to_date, urn_part
from services.ingest.hl7.errors import REQUIRED_FIELD_MISSING, error
from services.ingest.hl7.parse import Message, field_value, repetitions

#: Writes: "create" adds the resource only when no resource has its identifier (If-None-Exist);
#: "upsert" creates it or replaces the one with its identifier (conditional update).
WRITE_MODES = ("create", "upsert")
IDENTIFIER_ROOT = "urn:vigil:hl7"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
GENDERS = {"M": "male", "F": "female", "O": "other", "A": "other", "U": "unknown", "N": "unknown"}


@dataclass(frozen=True)
class MappedResource:
    """One FHIR resource to write, keyed by a deterministic identifier (system, value)."""

    resource_type: str
    system: str
    value: str
    body: dict
    mode: str = "create"
    full_url: str = field(default="")

    def __post_init__(self) -> None:
        if self.mode not in WRITE_MODES:
            raise ValueError(f"mode must be one of {WRITE_MODES}")
        if not self.full_url:
            seed = f"{self.resource_type}|{self.system}|{self.value}"
            object.__setattr__(self, "full_url", f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, seed)}")

    @property
    def search(self) -> str:
        """The conditional search that finds this resource: ``identifier=system|value``."""
        return "identifier=" + quote(f"{self.system}|{self.value}", safe=":/|")


@dataclass(frozen=True)
class Mapping:
    """A message mapped to FHIR: its Patient and the resources that reference it."""

    kind: str
    patient: MappedResource
    resources: tuple[MappedResource, ...]

    @property
    def primary(self) -> MappedResource:
        return self.resources[0]


def identifier_system(facility: str, kind: str) -> str:
    return f"{IDENTIFIER_ROOT}:{urn_part(facility)}:{kind}"


def facility_of(msg: Message) -> str:
    return msg.header.sending_facility or msg.header.receiving_facility or "unknown"


def patient_identifiers(msg: Message) -> list[dict]:
    """PID-3 (CX, repeating) as FHIR Identifiers; the first one keys the Patient."""
    segs = msg.segments("PID")
    if not segs:
        return []
    pid = segs[0]
    facility = facility_of(msg)
    out = []
    for rep in range(1, max(repetitions(pid, 3), 1) + 1):
        value = field_value(pid, 3, rep, 1)
        if not value:
            continue
        authority, oid, oid_type = (field_value(pid, 3, rep, 4, s) for s in (1, 2, 3))
        if oid and oid_type.upper() == "ISO":
            system = f"urn:oid:{oid}"
        else:
            system = identifier_system(facility, f"patient:{urn_part(authority or 'pid')}")
        identifier: dict = {"system": system, "value": value}
        if authority:  # the assigning authority as sent (the system above is normalised for a URN)
            identifier["assigner"] = {"display": authority}
        id_type = field_value(pid, 3, rep, 5)
        if id_type:
            identifier["type"] = {"coding": [{"system": V2_0203, "code": id_type}]}
        out.append(identifier)
    return out


#: How many PID-3 repetitions ``first_identifier`` looks through for a value.
MAX_ID_REPETITIONS = 10


def first_identifier(msg) -> tuple[str, str] | None:
    """(system, value) of the first PID-3 repetition with a value, by ``msg.get`` alone (so the
    listener's light view and the full parse agree): the same as ``patient_identifiers(msg)[0]``."""
    if not msg.has("PID"):
        return None
    facility = msg.header.sending_facility or msg.header.receiving_facility or "unknown"
    for rep in range(1, MAX_ID_REPETITIONS + 1):
        value = msg.get("PID", 3, rep, 1)
        if not value:
            continue
        authority, oid, oid_type = (msg.get("PID", 3, rep, 4, s) for s in (1, 2, 3))
        if oid and oid_type.upper() == "ISO":
            return f"urn:oid:{oid}", value
        return identifier_system(facility, f"patient:{urn_part(authority or 'pid')}"), value
    return None


def map_patient(msg: Message, mode: str) -> MappedResource:
    identifiers = patient_identifiers(msg)
    if not identifiers:
        raise error(REQUIRED_FIELD_MISSING, "patient identifier (PID-3.1) is required", "PID-3")
    body: dict = {"resourceType": "Patient", "identifier": identifiers}
    family = msg.get("PID", 5, 1, 1, 1)
    given = [g for g in (msg.get("PID", 5, 1, 2), msg.get("PID", 5, 1, 3)) if g]
    if family or given:
        name: dict = {}
        if family:
            name["family"] = family
        if given:
            name["given"] = given
        body["name"] = [name]
    gender = GENDERS.get(msg.get("PID", 8).upper())
    if gender:
        body["gender"] = gender
    birth = to_date(msg.get("PID", 7)[:8])
    if birth:
        body["birthDate"] = birth
    first = identifiers[0]
    return MappedResource("Patient", first["system"], first["value"], body, mode=mode)


def subject(patient: MappedResource) -> dict:
    return {"reference": patient.full_url}
