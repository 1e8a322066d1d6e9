"""Readable HL7 errors that become an ACK with an ERR segment.

``code`` is from HL7 table 0357 (message error condition codes); ``ack_code`` is AE
(the message was understood but its content is wrong) or AR (rejected: not parseable,
unsupported type, version or processing id). Messages name fields, never their values,
so no PHI reaches an ACK, a log line or an exception message.
"""
from __future__ import annotations

# HL7 table 0357
SEGMENT_SEQUENCE = "100"
REQUIRED_FIELD_MISSING = "101"
DATA_TYPE_ERROR = "102"
TABLE_VALUE_NOT_FOUND = "103"
UNSUPPORTED_MESSAGE_TYPE = "200"
UNSUPPORTED_EVENT = "201"
UNSUPPORTED_PROCESSING_ID = "202"
UNSUPPORTED_VERSION = "203"
UNKNOWN_KEY = "204"
DUPLICATE_KEY = "205"
INTERNAL_ERROR = "207"

ERROR_NAMES = {
    SEGMENT_SEQUENCE: "Segment sequence error",
    REQUIRED_FIELD_MISSING: "Required field missing",
    DATA_TYPE_ERROR: "Data type error",
    TABLE_VALUE_NOT_FOUND: "Table value not found",
    UNSUPPORTED_MESSAGE_TYPE: "Unsupported message type",
    UNSUPPORTED_EVENT: "Unsupported event code",
    UNSUPPORTED_PROCESSING_ID: "Unsupported processing id",
    UNSUPPORTED_VERSION: "Unsupported version id",
    UNKNOWN_KEY: "Unknown key identifier",
    DUPLICATE_KEY: "Duplicate key identifier",
    INTERNAL_ERROR: "Application internal error",
}


class Hl7Error(Exception):
    """One problem with one message; ``location`` is like ``PID-3`` or ``OBX``.

    (A plain exception class, not a frozen dataclass: context managers set ``__traceback__``.)"""

    def __init__(self, code: str, text: str, ack_code: str = "AE", location: str = ""):
        if ack_code not in ("AE", "AR"):
            raise ValueError(f"ack_code must be AE or AR, not {ack_code!r}")
        super().__init__(code, text)
        self.code, self.text, self.ack_code, self.location = code, text, ack_code, location

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location else ""
        return f"{where}{self.text} ({ERROR_NAMES.get(self.code, 'error')} {self.code})"


def reject(code: str, text: str, location: str = "") -> Hl7Error:
    return Hl7Error(code=code, text=text, ack_code="AR", location=location)


def error(code: str, text: str, location: str = "") -> Hl7Error:
    return Hl7Error(code=code, text=text, ack_code="AE", location=location)
