"""Create or repair a tenant's Subscriptions in its EHR, in the style its integration profile names.

``backport-topic`` (R4 Backport IG, rest-hook): one Subscription per topic in ``TOPICS``, pointing
at ``<public url>/notify/<tenant>`` with the tenant's bearer token in ``channel.header``. Existing
ones are matched by topic and endpoint; one that is errored/off or whose channel drifted is
updated and set back to ``requested`` (the EHR then handshakes again).

``r4-criteria`` (classic R4, as HAPI FHIR, Smile CDR and Medplum offer): one Subscription per entry
of ``R4_CRITERIA``, ``criteria`` a search, pointing at ``<public url>/notify/<tenant>/r4/<Type>``
with the same bearer token; ``channel.payload`` ``application/fhir+json`` (each matching version is
POSTed) unless ``payload=False`` (an empty POST, after which ingest searches by ``_lastUpdated``).
Existing ones are matched by criteria and endpoint and repaired the same way.
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


@dataclass(frozen=True)
class R4Criteria:
    resource_type: str
    query: str  # search parameters after "?" ("" = every version of the type)

    @property
    def criteria(self) -> str:
        return f"{self.resource_type}?{self.query}" if self.query else self.resource_type


#: The R4 criteria Vigil subscribes to: current notes, the clinician's answer on an inbox Task (a
#: completed or rejected Task, not the ones Vigil writes), patient messages, appointments.
R4_CRITERIA: list[R4Criteria] = [
    R4Criteria("DocumentReference", "status=current"),
    R4Criteria("Task", "status=completed,rejected,cancelled"),
    R4Criteria("Communication", ""),
    R4Criteria("Appointment", ""),
]


def r4_endpoint(notify_base: str, resource_type: str) -> str:
    """``notify_base`` is ``<public url>/notify/<tenant>``."""
    return f"{notify_base}/r4/{resource_type}"


def desired_r4(item: R4Criteria, endpoint: str, header: str, *, payload: bool = True) -> dict:
    channel = {"type": "rest-hook", "endpoint": endpoint, "header": [header]}
    if payload:
        channel["payload"] = "application/fhir+json"
    return {"resourceType": "Subscription", "status": "requested", "reason": f"Vigil ingest: {item.criteria}",
            "criteria": item.criteria, "channel": channel}


async def ensure_r4_subscriptions(client: FhirClient, notify_base: str, header: str,
                                  items: list[R4Criteria] = R4_CRITERIA, *, payload: bool = True) -> list[dict]:
    """Returns one row per criteria: topic (the criteria), subscription id, action (created | repaired | ok), status."""
    existing = await client.search("Subscription", {"_count": "100"})
    rows = []
    for item in items:
        endpoint = r4_endpoint(notify_base, item.resource_type)
        wanted = desired_r4(item, endpoint, header, payload=payload)
        match = next((s for s in existing if s.get("criteria") == item.criteria
                      and (s.get("channel") or {}).get("endpoint") == endpoint), None)
        if match is None:
            created = (await client.create(wanted)).resource
            rows.append({"topic": item.criteria, "id": created["id"], "action": "created",
                         "status": created.get("status")})
        elif match.get("status") in ("error", "off") or any(
                (match.get("channel") or {}).get(k) != wanted["channel"].get(k) for k in ("type", "payload", "header")):
            repaired = (await client.update({**wanted, "id": match["id"]})).resource
            rows.append({"topic": item.criteria, "id": match["id"], "action": "repaired",
                         "status": (repaired or {}).get("status", "requested")})
        else:
            rows.append({"topic": item.criteria, "id": match["id"], "action": "ok", "status": match.get("status")})
    return rows
