"""The SubscriptionTopic catalogue: canonical URL -> the resource type and write actions it covers.

R4 has no SubscriptionTopic resource; per the Backport IG a Subscription names its topic by
canonical URL in ``Subscription.criteria``. These are the topics this server can fire.
"""
from __future__ import annotations

from dataclasses import dataclass

TOPIC_BASE = "http://vigil.example/fhir/SubscriptionTopic"


@dataclass(frozen=True)
class Topic:
    url: str
    resource_type: str
    actions: tuple[str, ...]  # subset of services.ehr.hooks.ACTIONS
    description: str


TOPICS: dict[str, Topic] = {t.url: t for t in (
    Topic(f"{TOPIC_BASE}/note-created", "DocumentReference", ("create", "update"),
          "A clinical note (DocumentReference) was created or amended"),
    Topic(f"{TOPIC_BASE}/task-updated", "Task", ("update",),
          "A Task changed after creation, e.g. a clinician accepted or overrode an inbox item"),
    Topic(f"{TOPIC_BASE}/communication-created", "Communication", ("create",),
          "A Communication (patient message) was created"),
    Topic(f"{TOPIC_BASE}/appointment-changed", "Appointment", ("create", "update", "delete"),
          "An Appointment was booked, changed or removed"),
)}


def topics_for(resource_type: str, action: str) -> list[str]:
    """Canonicals of the topics a write of ``resource_type`` with ``action`` triggers."""
    return [t.url for t in TOPICS.values() if t.resource_type == resource_type and action in t.actions]
