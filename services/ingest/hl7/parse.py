"""Turn bytes from the wire into a parsed message with safe field access.

Input is normalised first: a UTF-8 byte-order mark is dropped, CR LF and bare LF segment
separators (the public samples use LF) become CR, blank lines and trailing whitespace go.
Field access never raises: a field that is not there reads as ``""``.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import hl7
from hl7.exceptions import ParseException

from services.ingest.hl7.errors import DATA_TYPE_ERROR, REQUIRED_FIELD_MISSING, SEGMENT_SEQUENCE, reject

BOM = "\ufeff"
MAX_MESSAGE_CHARS = 1_000_000  # 1 MB of text: far above any note, small enough to refuse abuse
SEGMENT_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


def decode(raw: bytes | str) -> str:
    """Bytes to text (UTF-8); invalid bytes are a rejection, not a crash."""
    if isinstance(raw, str):
        return raw
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise reject(DATA_TYPE_ERROR, f"message is not valid UTF-8 (byte offset {exc.start})") from None


def normalize(text: str) -> str:
    """CR-separated segments, no BOM, no blank segments, no trailing whitespace."""
    text = text.lstrip(BOM).lstrip()
    text = text.replace("\r\n", "\r").replace("\n", "\r")
    segments = [s.rstrip(" \t") for s in text.split("\r")]
    return "\r".join(s for s in segments if s.strip())


@dataclass(frozen=True)
class Header:
    """The MSH fields the pipeline routes and acknowledges on (no PHI in here)."""

    sending_application: str
    sending_facility: str
    receiving_application: str
    receiving_facility: str
    timestamp: str
    message_type: str
    trigger: str
    structure: str
    control_id: str
    processing_id: str
    version: str

    @property
    def kind(self) -> str:
        return f"{self.message_type}^{self.trigger}"


class Message:
    """A parsed HL7 v2 message; ``get`` reads one value by position (1-based, like HL7)."""

    def __init__(self, text: str, parsed: hl7.Message):
        self.text = text
        self._msg = parsed
        self.header = Header(
            sending_application=self.get("MSH", 3), sending_facility=self.get("MSH", 4),
            receiving_application=self.get("MSH", 5), receiving_facility=self.get("MSH", 6),
            timestamp=self.get("MSH", 7), message_type=self.get("MSH", 9, comp=1),
            trigger=self.get("MSH", 9, comp=2), structure=self.get("MSH", 9, comp=3),
            control_id=self.get("MSH", 10), processing_id=self.get("MSH", 11),
            version=self.get("MSH", 12))

    @property
    def raw(self) -> hl7.Message:
        return self._msg

    def segments(self, seg_id: str) -> list:
        return [s for s in self._msg if str(s[0]) == seg_id]

    def has(self, seg_id: str) -> bool:
        return any(str(s[0]) == seg_id for s in self._msg)

    def segment_ids(self) -> list[str]:
        return [str(s[0]) for s in self._msg]

    def get(self, seg_id: str, field: int, rep: int = 1, comp: int = 1, sub: int = 1, *, index: int = 0) -> str:
        segs = self.segments(seg_id)
        if index >= len(segs):
            return ""
        return field_value(segs[index], field, rep, comp, sub)

    def body_digest(self) -> str:
        """SHA-256 of every segment but MSH (as normalised text), to tell a resend from a different message."""
        body = "\r".join(line for line in self.text.split("\r") if line[:3] != "MSH")
        return hashlib.sha256(body.encode("utf-8")).hexdigest()


def field_value(segment, field: int, rep: int = 1, comp: int = 1, sub: int = 1) -> str:
    try:
        value = segment.extract_field(1, field, rep, comp, sub)
    except (IndexError, ValueError, TypeError, KeyError):
        return ""
    return str(value).strip() if value is not None else ""


def repetitions(segment, field: int) -> int:
    """How many repetitions a field has (0 when empty)."""
    if field >= len(segment):
        return 0
    value = segment[field]
    text = str(value)
    if not text:
        return 0
    return len(value) if value and isinstance(value[0], hl7.Repetition) else 1


def raw_field(segment, field: int) -> str:
    """The field exactly as sent (escapes not applied)."""
    return str(segment[field]) if field < len(segment) else ""


def check_framing(raw: bytes | str) -> str:
    """Decode and normalise; the text when every segment is framed like HL7 v2, else Hl7Error (AR)."""
    text = decode(raw)
    if len(text) > MAX_MESSAGE_CHARS:
        raise reject(DATA_TYPE_ERROR, f"message longer than {MAX_MESSAGE_CHARS} characters")
    text = normalize(text)
    if not text:
        raise reject(REQUIRED_FIELD_MISSING, "empty message", "MSH")
    if not text.startswith("MSH") or len(text) < 8:
        raise reject(SEGMENT_SEQUENCE, "message must start with an MSH segment", "MSH")
    if text[3] in "\r" or text[3].isalnum():
        raise reject(DATA_TYPE_ERROR, "MSH-1 field separator is missing or invalid", "MSH-1")
    encoding_chars = text[4:text.find(text[3], 4)] if text.find(text[3], 4) > 0 else ""
    if len(encoding_chars) < 4 or len(set(encoding_chars + text[3])) != len(encoding_chars) + 1 \
            or "\r" in encoding_chars:
        raise reject(DATA_TYPE_ERROR, "MSH-2 encoding characters are missing or invalid", "MSH-2")
    for number, segment in enumerate(text.split("\r"), start=1):
        seg_id = segment[:3]
        if len(seg_id) != 3 or not set(seg_id) <= SEGMENT_ID_CHARS or (len(segment) > 3 and segment[3] != text[3]):
            raise reject(SEGMENT_SEQUENCE, f"segment {number} does not start with a segment id", f"segment {number}")
    return text


def parse(raw: bytes | str) -> Message:
    """Decode, normalise and parse; raises Hl7Error (AR) when it is not an HL7 v2 message."""
    text = check_framing(raw)
    try:
        parsed = hl7.parse(text)
    except (ParseException, IndexError, ValueError, TypeError) as exc:
        raise reject(DATA_TYPE_ERROR, f"not parseable as HL7 v2 ({type(exc).__name__})") from None
    return Message(text, parsed)
