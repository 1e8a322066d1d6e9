"""Original-mode acknowledgements: MSA AA/AE/AR and, for errors, an ERR segment.

The ACK always uses the standard encoding characters ``|^~\\&`` and escapes every value
(``services.core.hl7wire.escape``),
so an error text can never break the ACK. A message too broken to read still gets an AR
(with empty fields where the original header could not be read).
"""
from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone

from services.core.hl7wire import escape
from services.ingest.hl7.errors import ERROR_NAMES, Hl7Error
from services.ingest.hl7.parse import Header

ACK_CODES = ("AA", "AE", "AR")
MAX_TEXT = 80  # MSA-3 / ERR-8 kept short: a reason, not a dump


def _location(location: str) -> str:
    """``PID-3`` -> ``PID^1^3`` (ERL: segment id, sequence, field)."""
    seg, _, rest = location.partition("-")
    if len(seg) != 3 or not seg.isalnum():
        return ""
    field = rest.split(".")[0]
    return f"{seg}^1^{field}" if field.isdigit() else f"{seg}^1"


_stamp_cache: tuple[int, str] = (0, "")


def _stamp(now: datetime | None) -> str:
    """MSH-7 of the ACK; the text of the current second is reused (a busy feed acks many per second)."""
    global _stamp_cache
    if now is not None:
        return now.strftime("%Y%m%d%H%M%S+0000")
    second = int(time.time())
    if _stamp_cache[0] != second:
        _stamp_cache = (second, datetime.fromtimestamp(second, timezone.utc).strftime("%Y%m%d%H%M%S+0000"))
    return _stamp_cache[1]


def build_ack(header: Header | None, code: str, err: Hl7Error | None = None, *,
              now: datetime | None = None, control_id: str | None = None) -> str:
    """The ACK text (CR-separated, trailing CR)."""
    if code not in ACK_CODES:
        raise ValueError(f"ack code must be one of {ACK_CODES}")
    if code != "AA" and err is None:
        raise ValueError("an AE/AR acknowledgement needs the error")
    h = header
    stamp = _stamp(now)
    trigger = escape(h.trigger) if h else ""
    fields = ["MSH", "^~\\&", escape(h.receiving_application) if h else "VIGIL",
              escape(h.receiving_facility) if h else "", escape(h.sending_application) if h else "",
              escape(h.sending_facility) if h else "", stamp, "", f"ACK^{trigger}^ACK",
              control_id or uuid.uuid4().hex[:20], escape(h.processing_id) if h and h.processing_id else "P",
              escape(h.version) if h and h.version else "2.5.1"]
    msh = "|".join(fields)
    text = escape(str(err))[:MAX_TEXT] if err else ""
    msa = f"MSA|{code}|{escape(h.control_id) if h else ''}" + (f"|{text}" if text else "")
    segments = [msh, msa]
    if err is not None:
        name = escape(ERROR_NAMES.get(err.code, "Error"))
        segments.append(f"ERR||{_location(err.location)}|{err.code}^{name}^HL70357|E||||{text}")
    return "\r".join(segments) + "\r"
