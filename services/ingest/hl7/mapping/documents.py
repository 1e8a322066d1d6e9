"""ORU^R01 and MDM^T02 -> DocumentReference with the note text as a text/plain attachment.

The note text is the OBX segments of value type TX or FT, in order, one line per
repetition. Other value types (ED, RP, NM, CWE, ...) carry no narrative text this
pipeline can use; a message with none of TX/FT is refused with AE naming the types found.
"""
from __future__ import annotations

import base64

from hl7.util import unescape

from services.ingest.hl7.datatypes import coding, to_instant
from services.ingest.hl7.errors import DATA_TYPE_ERROR, error
from services.ingest.hl7.mapping.common import (MappedResource, Mapping, facility_of, identifier_system,
                                                map_patient, subject)
from services.ingest.hl7.parse import Message, field_value, raw_field

TEXT_TYPES = ("TX", "FT")
LOINC = "http://loinc.org"
V2_0270 = "http://terminology.hl7.org/CodeSystem/v2-0270"

#: HL7 table 0270 document types -> LOINC document codes.
DOCUMENT_TYPES = {
    "DS": ("18842-5", "Discharge summary"), "CN": ("11488-4", "Consult note"),
    "HP": ("34117-2", "History and physical note"), "OP": ("11504-8", "Surgical operation note"),
    "PN": ("28570-0", "Procedure note"), "PR": ("11506-3", "Progress note"),
    "DI": ("18748-4", "Diagnostic imaging study"), "SP": ("11526-1", "Pathology study"),
    "AR": ("34109-9", "Note"), "CD": ("34109-9", "Note"), "CM": ("34109-9", "Note"),
}
#: TXA-17 document completion status -> DocumentReference.docStatus.
COMPLETION = {"AU": "final", "LA": "final", "DO": "final", "DI": "preliminary", "IN": "preliminary",
              "IP": "preliminary", "PA": "preliminary"}
#: OBX-11 result status -> DocumentReference.docStatus.
RESULT_STATUS = {"F": "final", "C": "amended", "P": "preliminary", "R": "preliminary", "S": "preliminary",
                 "I": "preliminary"}
NOTE_TYPE_FALLBACK = ("34109-9", "Note")


def _text_of(segment, ft: bool) -> list[str]:
    raw = raw_field(segment, 5)
    rep_sep = segment.separators[2] if len(segment.separators) > 2 else "~"
    lines = []
    for part in raw.split(rep_sep):
        text = unescape(segment, part)
        if ft:
            text = text.replace("\r", "\n")
        lines.append(text)
    return lines


def note_text(msg: Message) -> str:
    """The narrative text of the message; raises AE when there is none."""
    lines: list[str] = []
    other_types: list[str] = []
    for segment in msg.segments("OBX"):
        value_type = field_value(segment, 2).upper()
        if value_type in TEXT_TYPES:
            lines.extend(_text_of(segment, value_type == "FT"))
        elif value_type and value_type not in other_types:
            other_types.append(value_type)
    text = "\n".join(lines).strip("\n")
    if not text.strip():
        found = ", ".join(other_types) if other_types else "none"
        raise error(DATA_TYPE_ERROR, f"no note text: only OBX value types TX and FT are supported "
                    f"(found: {found})", "OBX-2")
    return text


def _doc_type(msg: Message) -> dict:
    txa_type = msg.get("TXA", 2).upper()
    codings = []
    if txa_type:
        code, display = DOCUMENT_TYPES.get(txa_type, NOTE_TYPE_FALLBACK)
        codings.append({"system": LOINC, "code": code, "display": display})
        codings.append({"system": V2_0270, "code": txa_type})
    else:
        service = coding(msg.get("OBR", 4, comp=1), msg.get("OBR", 4, comp=2), msg.get("OBR", 4, comp=3))
        if service:
            codings.append(service)
        codings.append({"system": LOINC, "code": NOTE_TYPE_FALLBACK[0], "display": NOTE_TYPE_FALLBACK[1]})
    return {"coding": codings}


def doc_status(msg: Message) -> str | None:
    if msg.has("TXA"):
        return COMPLETION.get(msg.get("TXA", 17).upper())
    statuses = [field_value(s, 11).upper() for s in msg.segments("OBX")
                if field_value(s, 2).upper() in TEXT_TYPES]
    return RESULT_STATUS.get(statuses[-1]) if statuses else None


def map_document(msg: Message, tz: str | None) -> Mapping:
    text = note_text(msg)
    patient = map_patient(msg, mode="create")
    facility = facility_of(msg)
    document_number = msg.get("TXA", 12, comp=1)
    if document_number:
        system, value = identifier_system(facility, "document"), document_number
    else:
        system, value = identifier_system(facility, "message"), msg.header.control_id
    when = next((t for t in (to_instant(msg.get("TXA", 6), tz), to_instant(msg.get("TXA", 4), tz),
                             to_instant(msg.get("OBR", 7), tz), to_instant(msg.header.timestamp, tz)) if t), None)
    attachment: dict = {"contentType": "text/plain; charset=utf-8",
                        "data": base64.b64encode(text.encode("utf-8")).decode("ascii")}
    if when:
        attachment["creation"] = when
    body: dict = {"resourceType": "DocumentReference", "identifier": [{"system": system, "value": value}],
                  "status": "current", "type": _doc_type(msg), "subject": subject(patient),
                  "content": [{"attachment": attachment}]}
    status = doc_status(msg)
    if status:
        body["docStatus"] = status
    if when:
        body["date"] = when
    resource = MappedResource("DocumentReference", system, value, body, mode="create")
    return Mapping(kind=msg.header.kind, patient=patient, resources=(resource,))
