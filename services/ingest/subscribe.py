"""Create or repair a tenant's Subscriptions (R4 Backport IG, rest-hook) in its EHR.

One Subscription per topic in ``TOPICS``, pointing at ``<public url>/notify/<tenant>`` with
the tenant's bearer token in ``channel.header``. Existing ones are matched by topic and
endpoint; one that is errored/off or whose channel drifted is updated and set back to
``requested`` (the EHR then handshakes again).
"""
from __future__ import annotations

from dataclasses import dataclass

from services.core.fhir import FhirClient

BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition"
PROFILE = f"{BACKPORT}/backport-subscription"
TOPIC_BASE = "http://vigil.example/fhir/SubscriptionTopic"  # the EHR sandbox's topic canonicals
HEARTBEAT_S = 60
TIMEOUT_S = 30
MAX_COUNT = 20


@dataclass(frozen=True)
class Topic:
    name: str
    resource_type: str
    filter: str | None
    content: str  # empty | id-only | full-resource

    @property
    def url(self) -> str:
        return f"{TOPIC_BASE}/{self.name}"


#: The topics Vigil subscribes to: notes, inbox Task actions, patient messages, appointments.
TOPICS: list[Topic] = [
    Topic("note-created", "DocumentReference", "DocumentReference?status=current", "id-only"),
    Topic("task-updated", "Task", None, "full-resource"),
    Topic("communication-created", "Communication", None, "id-only"),
    Topic("appointment-changed", "Appointment", None, "id-only"),
]


def desired(topic: Topic, endpoint: str, header: str) -> dict:
    sub = {"resourceType": "Subscription", "meta": {"profile": [PROFILE]}, "status": "requested",
           "reason": f"Vigil ingest: {topic.name}", "criteria": topic.url,
           "channel": {"type": "rest-hook", "endpoint": endpoint, "payload": "application/fhir+json",
                        "_payload": {"extension": [{"url": f"{BACKPORT}/backport-payload-content",
                                                    "valueCode": topic.content}]},
                        "header": [header],
                        "extension": [{"url": f"{BACKPORT}/backport-heartbeat-period", "valueUnsignedInt": HEARTBEAT_S},
                                      {"url": f"{BACKPORT}/backport-timeout", "valueUnsignedInt": TIMEOUT_S},
                                      {"url": f"{BACKPORT}/backport-max-count", "valuePositiveInt": MAX_COUNT}]}}
    if topic.filter:
        sub["_criteria"] = {"extension": [{"url": f"{BACKPORT}/backport-filter-criteria", "valueString": topic.filter}]}
    return sub


def _drifted(existing: dict, wanted: dict) -> bool:
    a, b = existing.get("channel") or {}, wanted["channel"]
    return any(a.get(k) != b.get(k) for k in ("type", "endpoint", "payload", "header", "_payload", "extension")) \
        or existing.get("_criteria") != wanted.get("_criteria")


async def ensure_subscriptions(client: FhirClient, endpoint: str, header: str,
                               topics: list[Topic] = TOPICS) -> list[dict]:
    """Returns one row per topic: topic, subscription id, action (created | repaired | ok), status."""
    existing = await client.search("Subscription", {"_count": "100"})
    rows = []
    for topic in topics:
        wanted = desired(topic, endpoint, header)
        match = next((s for s in existing if s.get("criteria") == topic.url
                      and (s.get("channel") or {}).get("endpoint") == endpoint), None)
        if match is None:
            created = (await client.create(wanted)).resource
            rows.append({"topic": topic.name, "id": created["id"], "action": "created", "status": created.get("status")})
        elif match.get("status") in ("error", "off") or _drifted(match, wanted):
            repaired = (await client.update({**wanted, "id": match["id"]})).resource
            rows.append({"topic": topic.name, "id": match["id"], "action": "repaired",
                         "status": (repaired or {}).get("status", "requested")})
        else:
            rows.append({"topic": topic.name, "id": match["id"], "action": "ok", "status": match.get("status")})
    return rows
