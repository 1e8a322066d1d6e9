"""Checks every message must pass before it is mapped (MSH header, PID)."""
from __future__ import annotations

from services.ingest.hl7.datatypes import is_valid_dtm
from services.ingest.hl7.errors import (DATA_TYPE_ERROR, REQUIRED_FIELD_MISSING, UNSUPPORTED_PROCESSING_ID,
                                        UNSUPPORTED_VERSION, Hl7Error, error, reject)
from services.ingest.hl7.parse import Message

PROCESSING_IDS = ("P", "T", "D")
MAX_CONTROL_ID = 199  # MSH-10 is ST(199) in v2.7+; longer values are refused, not truncated


def check_header(msg: Message) -> None:
    """Raise the first problem with MSH (AR: the message cannot be processed at all)."""
    h = msg.header
    if not h.message_type or not h.trigger:
        raise reject(REQUIRED_FIELD_MISSING, "message type and trigger event (MSH-9.1, MSH-9.2) are required", "MSH-9")
    if not h.control_id:
        raise reject(REQUIRED_FIELD_MISSING, "message control id (MSH-10) is required", "MSH-10")
    if len(h.control_id) > MAX_CONTROL_ID:
        raise reject(DATA_TYPE_ERROR, f"message control id (MSH-10) is longer than {MAX_CONTROL_ID}", "MSH-10")
    if not h.version:
        raise reject(REQUIRED_FIELD_MISSING, "version id (MSH-12) is required", "MSH-12")
    if not h.version.startswith("2."):
        raise reject(UNSUPPORTED_VERSION, "only HL7 version 2.x is supported", "MSH-12")
    if (h.processing_id[:1] or "P").upper() not in PROCESSING_IDS:
        raise reject(UNSUPPORTED_PROCESSING_ID, "processing id (MSH-11) must be P, T or D", "MSH-11")
    if h.timestamp and not is_valid_dtm(h.timestamp):
        raise reject(DATA_TYPE_ERROR, "message date/time (MSH-7) is not a valid HL7 DTM", "MSH-7")


def check_patient(msg: Message) -> None:
    if not msg.has("PID"):
        raise error(REQUIRED_FIELD_MISSING, "PID segment is required", "PID")
    if not msg.get("PID", 3, comp=1):
        raise error(REQUIRED_FIELD_MISSING, "patient identifier (PID-3.1) is required", "PID-3")


def problems(msg: Message) -> list[Hl7Error]:
    """All header and patient problems (for reports); ``check_*`` raise the first."""
    found = []
    for check in (check_header, check_patient):
        try:
            check(msg)
        except Hl7Error as exc:
            found.append(exc)
    return found
