"""Notification Bundles built per the R4 Subscriptions Backport IG, for the receiver tests."""
from __future__ import annotations

TOPIC_NOTES = "http://vigil.example/fhir/SubscriptionTopic/note-created"
TOPIC_TASKS = "http://vigil.example/fhir/SubscriptionTopic/task-updated"


def notification(subscription: str, kind: str, *, since: int, events: list[tuple] = (), topic: str = TOPIC_NOTES,
                 status: str = "active", content: str = "full-resource", base: str = "http://ehr.example/fhir/t"):
    """``events``: (event number, resource dict or None). ``content`` decides what goes in."""
    params = [{"name": "subscription", "valueReference": {"reference": f"{base}/Subscription/{subscription}"}},
              {"name": "topic", "valueCanonical": topic},
              {"name": "status", "valueCode": status},
              {"name": "type", "valueCode": kind},
              {"name": "events-since-subscription-start", "valueString": str(since)}]
    entries = []
    for number, resource in events:
        parts = [{"name": "event-number", "valueString": str(number)},
                 {"name": "timestamp", "valueInstant": "2026-01-01T00:00:00Z"}]
        if resource is not None and content != "empty":
            ref = f"{base}/{resource['resourceType']}/{resource['id']}/_history/{resource['meta']['versionId']}"
            parts.append({"name": "focus", "valueReference": {"reference": ref}})
            entry = {"fullUrl": ref, "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"},
                     "response": {"status": "200"}}
            if content == "full-resource":
                entry["resource"] = resource
            entries.append(entry)
        params.append({"name": "notification-event", "part": parts})
    status_entry = {"fullUrl": "urn:uuid:5f1e5c2e-0000-4000-8000-000000000001",
                    "resource": {"resourceType": "Parameters", "parameter": params}}
    return {"resourceType": "Bundle", "type": "history", "timestamp": "2026-01-01T00:00:00Z",
            "entry": [status_entry, *entries]}
