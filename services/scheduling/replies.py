"""What an engine may ask the agent to say. Engines never produce confirmation text: they return
``Confirm`` naming ledger keys, and the agent renders it from the ledger (``guard.render``)."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Say:
    text: str                     # free text: checked by the claim guard before it is sent


@dataclass(frozen=True)
class Confirm:
    kind: str                     # booked | cancelled | rescheduled
    keys: tuple[str, ...]         # ledger idempotency keys: (book,) | (cancel,) | (book, cancel)


@dataclass(frozen=True)
class Fact:
    """Text rendered by the agent from the EHR read in this turn (a staff-side change, a logistics
    answer from settings); not engine text, so not put through the claim guard."""
    text: str


@dataclass(frozen=True)
class Status:
    """The patient's upcoming appointments, rendered from a fresh read."""


@dataclass(frozen=True)
class Escalate:
    reason: str                   # CreateStaffTask reason code
    priority: str = "routine"
    text: str = ""                # what to tell the patient (a fixed safe text)


@dataclass
class TurnOutput:
    replies: list = field(default_factory=list)
