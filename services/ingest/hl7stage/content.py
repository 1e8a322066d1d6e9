"""What a note-bearing HL7 message holds: its text, and what it holds that is not text.

- OBX value type TX / FT: text, one line per repetition (FT formatting becomes line breaks);
- OBX value type ED (encapsulated data, ``source^type^subtype^encoding^data``): text/plain and
  RTF are decoded to text (Base64, Hex or plain ``A`` encoding); anything else (PDF, images,
  octet streams) is recorded by its content type;
- OBX value type RP (a reference pointer to content elsewhere) is recorded as ``reference``.

A note whose parts hold no text is still a note: it is kept with status ``no-text`` and its
content types (``services.ingest.store.documents``), never dropped.
"""
from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from hl7.util import unescape

from services.ingest.hl7.parse import Message, field_value, raw_field

TEXT_TYPES = ("TX", "FT")
NOTE_PART_TYPES = ("TX", "FT", "ED", "RP")
REFERENCE = "reference"


@dataclass(frozen=True)
class NoteContent:
    text: str  # "" when the message holds no readable text
    content_types: tuple[str, ...]  # e.g. ("text/plain",), ("application/pdf", "reference")

    @property
    def has_text(self) -> bool:
        return bool(self.text.strip())


def _lines(segment, ft: bool) -> list[str]:
    raw = raw_field(segment, 5)
    rep_sep = segment.separators[2] if len(segment.separators) > 2 else "~"
    out = []
    for part in raw.split(rep_sep):
        text = unescape(segment, part)
        out.append(text.replace("\r", "\n") if ft else text)
    return out


def _content_type(kind: str, subtype: str) -> str:
    kind, subtype = kind.strip().lower(), subtype.strip().lower()
    if kind in ("text", "tx") and subtype in ("", "plain"):
        return "text/plain"
    if subtype == "rtf" or kind == "rtf":
        return "text/rtf"
    if kind == "ap" or kind == "application":
        return f"application/{subtype or 'octet-stream'}"
    if kind == "im" or kind == "image":
        return f"image/{subtype or 'unknown'}"
    if kind in ("audio", "video", "multipart", "model", "message") and subtype:
        return f"{kind}/{subtype}"
    return f"application/{subtype or 'octet-stream'}"


def _decoded(encoding: str, data: str) -> bytes | None:
    encoding = encoding.strip().upper()
    try:
        if encoding in ("BASE64", "B64"):
            return base64.b64decode(re.sub(r"\s+", "", data), validate=True)
        if encoding == "HEX":
            return bytes.fromhex(re.sub(r"\s+", "", data))
        if encoding in ("A", ""):
            return data.encode("utf-8")
    except (binascii.Error, ValueError):
        return None
    return None


def _ed(msg: Message, segment) -> tuple[str, str]:
    """(content type, text or '') of one ED value."""
    kind, subtype, encoding = (field_value(segment, 5, 1, c) for c in (2, 3, 4))
    content_type = _content_type(kind, subtype)
    data = unescape(segment, field_value(segment, 5, 1, 5)) if field_value(segment, 5, 1, 5) else ""
    if content_type not in ("text/plain", "text/rtf") or not data:
        return content_type, ""
    raw = _decoded(encoding, data)
    if raw is None:
        return content_type, ""
    text = raw.decode("utf-8", errors="replace")
    if content_type == "text/rtf" or text.lstrip().startswith("{\\rtf"):
        return "text/rtf", rtf_to_text(text)
    return content_type, text


def note_content(msg: Message) -> NoteContent:
    lines: list[str] = []
    types: list[str] = []
    for segment in msg.segments("OBX"):
        value_type = field_value(segment, 2).upper()
        if value_type in TEXT_TYPES:
            lines.extend(_lines(segment, value_type == "FT"))
            content_type = "text/plain"
        elif value_type == "ED":
            content_type, text = _ed(msg, segment)
            if text:
                lines.append(text)
        elif value_type == "RP":
            content_type = REFERENCE
        else:
            continue
        if content_type not in types:
            types.append(content_type)
    return NoteContent("\n".join(lines).strip("\n"), tuple(types))


def is_note(msg: Message) -> bool:
    """MDM messages are documents; an ORU is one when it has a TX, FT, ED or RP result."""
    if msg.header.message_type.upper() == "MDM":
        return True
    return any(field_value(s, 2).upper() in NOTE_PART_TYPES for s in msg.segments("OBX"))


_RTF_DESTINATIONS = re.compile(r"\\(fonttbl|colortbl|stylesheet|info|pict|header|footer|\*)")
_RTF_TOKEN = re.compile(r"\\'([0-9a-fA-F]{2})|\\u(-?\d+)\??|\\([a-zA-Z]+)(-?\d+)? ?|\\([{}\\])|([{}])|[\r\n]+|([^\\{}\r\n]+)")
_RTF_BREAKS = {"par", "line", "sect", "page", "row"}


def rtf_to_text(rtf: str) -> str:
    """Plain text of an RTF document: groups that hold no body text (font tables, pictures,
    ``\\*`` destinations) are skipped; ``\\par`` and ``\\line`` become line breaks; ``\\'hh`` and
    ``\\uN`` become their characters."""
    out: list[str] = []
    depth, skip_from = 0, None
    for m in _RTF_TOKEN.finditer(rtf):
        hexchar, uni, word, _, escaped, brace, text = m.groups()
        if brace == "{":
            depth += 1
            rest = rtf[m.end():m.end() + 12]
            if skip_from is None and _RTF_DESTINATIONS.match(rest):
                skip_from = depth
            continue
        if brace == "}":
            if skip_from is not None and depth <= skip_from:
                skip_from = None
            depth -= 1
            continue
        if skip_from is not None:
            continue
        if hexchar:
            out.append(bytes([int(hexchar, 16)]).decode("cp1252", errors="replace"))
        elif uni:
            code = int(uni)
            out.append(chr(code + 65536 if code < 0 else code))
        elif word:
            if word in _RTF_BREAKS:
                out.append("\n")
            elif word == "tab":
                out.append("\t")
        elif escaped:
            out.append(escaped)
        elif text:
            out.append(text)
    return re.sub(r"[ \t]+\n", "\n", "".join(out)).strip()
