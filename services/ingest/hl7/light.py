"""The MLLP listener's view of a message: MSH and PID read by splitting lines, no full parse.

The listener answers on the header (route, dedupe, ACK) and keys the message by PID-3; parsing
the whole message into containers costs more than everything else on its path. ``LightMessage``
reads the same values ``Message.get`` reads (no escapes applied, surrounding whitespace stripped;
a unit test compares both on the public samples and on generated messages). The hl7 stage parses
the whole message.
"""
from __future__ import annotations

import hashlib

from services.ingest.hl7.parse import Header, check_framing


class LightMessage:
    def __init__(self, text: str):
        self.text = text
        self._field_sep = text[3]
        encoding = text[4:text.find(self._field_sep, 4)]
        self._comp, self._rep = encoding[0], encoding[1]
        self._sub = encoding[3] if len(encoding) > 3 else "&"
        self._segments: dict[str, list[str]] = {}
        for line in text.split("\r"):
            seg_id = line[:3]
            if seg_id not in self._segments:
                self._segments[seg_id] = line.split(self._field_sep)
        msh = self._segments["MSH"]

        def field(n: int) -> str:  # MSH-n, first repetition, first component
            raw = msh[n - 1] if n - 1 < len(msh) else ""
            return raw.split(self._rep, 1)[0].split(self._comp, 1)[0].split(self._sub, 1)[0].strip()
        kind = (msh[8] if len(msh) > 8 else "").split(self._rep, 1)[0].split(self._comp)
        part = (lambda i: kind[i].split(self._sub, 1)[0].strip() if i < len(kind) else "")
        self.header = Header(
            sending_application=field(3), sending_facility=field(4), receiving_application=field(5),
            receiving_facility=field(6), timestamp=field(7), message_type=part(0), trigger=part(1),
            structure=part(2), control_id=field(10), processing_id=field(11), version=field(12))

    def has(self, seg_id: str) -> bool:
        return seg_id in self._segments

    def get(self, seg_id: str, field: int, rep: int = 1, comp: int = 1, sub: int = 1) -> str:
        """The first ``seg_id`` segment's value (MSH fields from 3 on)."""
        parts = self._segments.get(seg_id)
        if parts is None:
            return ""
        index = field - 1 if seg_id == "MSH" else field
        if index < 1 or index >= len(parts):
            return ""
        value = parts[index]
        for sep, position in ((self._rep, rep), (self._comp, comp), (self._sub, sub)):
            pieces = value.split(sep)
            if position < 1 or position > len(pieces):
                return ""
            value = pieces[position - 1]
        return value.strip()

    def body_digest(self) -> str:
        body = "\r".join(line for line in self.text.split("\r") if line[:3] != "MSH")
        return hashlib.sha256(body.encode("utf-8")).hexdigest()


def parse_light(raw: bytes | str) -> LightMessage:
    """Decode, normalise and check the framing of every segment (like ``parse``); Hl7Error (AR) if not HL7."""
    return LightMessage(check_framing(raw))
