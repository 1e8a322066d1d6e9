"""Subscription topics Vigil uses and the resource types each one covers (for the search fallback)."""
from __future__ import annotations

#: keyword found in a topic canonical URL -> resource types it notifies about.
TOPIC_TYPES: list[tuple[str, tuple[str, ...]]] = [
    ("documentreference", ("DocumentReference",)),
    ("clinical-note", ("DocumentReference",)),
    ("note", ("DocumentReference",)),
    ("task", ("Task",)),
    ("communication", ("Communication",)),
    ("message", ("Communication",)),
    ("appointment", ("Appointment",)),
]
ALL_TYPES = ("DocumentReference", "Task", "Communication", "Appointment")


def resource_types(topic: str | None) -> tuple[str, ...]:
    lowered = (topic or "").lower()
    for keyword, types in TOPIC_TYPES:
        if keyword in lowered:
            return types
    return ALL_TYPES
