"""HL7 v2 -> FHIR R4: one explicit table of supported message kinds.

``map_message`` validates, maps and checks the result against the R4 models, so a
message either becomes valid FHIR or an Hl7Error that becomes an AE/AR ACK.
"""
from __future__ import annotations

from typing import Callable

from services.ingest.hl7.errors import (DATA_TYPE_ERROR, UNSUPPORTED_EVENT, UNSUPPORTED_MESSAGE_TYPE, Hl7Error,
                                        error, reject)
from services.ingest.hl7.mapping.appointments import map_appointment
from services.ingest.hl7.mapping.common import MappedResource, Mapping
from services.ingest.hl7.mapping.documents import map_document
from services.ingest.hl7.mapping.encounters import map_encounter
from services.ingest.hl7.mapping.fhir_check import check_resource
from services.ingest.hl7.parse import Message
from services.ingest.hl7.validate import check_header, check_patient

Mapper = Callable[[Message, "str | None"], Mapping]

#: message type ^ trigger -> mapper. Every supported kind is listed here and nowhere else.
MAPPERS: dict[str, Mapper] = {
    "ORU^R01": map_document,
    "MDM^T02": map_document,
    "ADT^A01": map_encounter,
    "ADT^A03": map_encounter,
    "ADT^A08": map_encounter,
    "SIU^S12": map_appointment,
    "SIU^S14": map_appointment,
    "SIU^S15": map_appointment,
}
SUPPORTED_TYPES = frozenset(k.split("^")[0] for k in MAPPERS)

__all__ = ["MAPPERS", "MappedResource", "Mapping", "map_message", "mapper_for"]


def mapper_for(msg: Message) -> Mapper:
    kind = msg.header.kind.upper()
    if kind in MAPPERS:
        return MAPPERS[kind]
    if msg.header.message_type.upper() in SUPPORTED_TYPES:
        raise reject(UNSUPPORTED_EVENT, f"trigger event {msg.header.trigger[:10]!r} is not supported for "
                     f"{msg.header.message_type[:10]}", "MSH-9.2")
    raise reject(UNSUPPORTED_MESSAGE_TYPE, f"message type {msg.header.message_type[:10]!r} is not supported; "
                 f"supported: {', '.join(sorted(MAPPERS))}", "MSH-9.1")


def map_message(msg: Message, tz: str | None = None) -> Mapping:
    """Validate and map; raises Hl7Error with a readable reason."""
    check_header(msg)
    mapper = mapper_for(msg)
    check_patient(msg)
    try:
        mapping = mapper(msg, tz)
    except Hl7Error:
        raise
    except (ValueError, TypeError, IndexError, KeyError, OverflowError) as exc:
        raise error(DATA_TYPE_ERROR, f"a field could not be converted ({type(exc).__name__})") from None
    for resource in (mapping.patient, *mapping.resources):
        check_resource(resource)
    return mapping
