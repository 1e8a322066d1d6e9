"""What a stage makes of one consumed record before any handler runs: passed over (a type the
stage does not handle), an event, or the validation error that dead-letters it; and when a
retry record is due."""
from __future__ import annotations

from typing import Iterable

from services.core import schemas
from services.core.errors import ValidationError
from services.core.events import Event, decode, header_value

#: The row of a record whose type the stage does not handle (``StageSpec.types``).
PASSED_OVER: tuple[None, None] = (None, None)


class Intake:
    """``types``: the event types the stage handles (None: all); ``tenant``: the topic's tenant."""

    def __init__(self, tenant: str, types: Iterable[str] | None):
        self.tenant = tenant
        self.types = None if types is None else frozenset(t.encode() for t in types)

    def row(self, m) -> tuple[Event | None, BaseException | None]:
        """``PASSED_OVER``, ``(event, None)`` or ``(None, error)``."""
        return self.decode(m) if self.wanted(m.headers) else PASSED_OVER

    def wanted(self, headers) -> bool:
        """False for a record of a type the stage does not handle (its last ``ce_type``, as decoding
        reads it); a record without one is decoded, and dead-lettered if it is no event."""
        types = self.types
        if types is None:
            return True
        found = None
        for name, raw in headers:
            if name == "ce_type":
                found = raw
        return found is None or found in types

    def decode(self, m) -> tuple[Event | None, BaseException | None]:
        try:
            event = decode(m.key, m.value, m.headers)
            if event.tenant != self.tenant:
                raise ValidationError("event tenant does not match the topic's tenant", code="tenant_mismatch")
            schemas.validate(event.type, event.data)
            return event, None
        except ValidationError as exc:
            return None, exc


def due_ms(headers) -> int:
    """When a retry record may run (epoch ms; 0: now)."""
    return int(header_value(headers, "vigil-due") or 0)
