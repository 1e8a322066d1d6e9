"""Notification Bundles in the R4 form of the Backport IG (profile
``backport-subscription-notification-r4``).

Shape (every notification, ``$events`` and ``$status`` entry):

- ``Bundle.type`` = ``history``; ``Bundle.timestamp`` = when it was built.
- ``entry[0]``: ``fullUrl`` ``urn:uuid:<id>``, ``resource`` a ``Parameters`` (profile
  ``backport-subscription-status-r4``) with parameters, in this order:
  ``subscription`` (valueReference ``<base>/Subscription/<id>``), ``topic`` (valueCanonical;
  left out for ``empty`` content), ``status`` (valueCode), ``type`` (valueCode: handshake |
  heartbeat | event-notification | query-status | query-event),
  ``events-since-subscription-start`` (valueString, a decimal number: events ever numbered
  for this subscription, not counting handshakes and heartbeats), then per event a
  ``notification-event`` with parts ``event-number`` (valueString), ``timestamp``
  (valueInstant) and, unless content is ``empty``, ``focus`` (valueReference to the exact
  version: ``<base>/<Type>/<id>/_history/<version>``); ``error`` (valueCodeableConcept) when
  the subscription is in error. ``request`` GET ``<base>/Subscription/<id>/$status``,
  ``response.status`` ``200``.
- ``full-resource`` only: one more entry per event, ``fullUrl`` ``<base>/<Type>/<id>``,
  ``resource`` = that exact version, ``request`` (POST ``<Type>`` for a create, PUT or DELETE
  ``<Type>/<id>``), ``response`` (``201``/``200``/``204``, ``etag`` ``W/"<version>"``). A
  deletion has no ``resource``.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timezone

from services.ehr.subscriptions.store import QueuedEvent, SubState

EXT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
BUNDLE_PROFILE = EXT + "backport-subscription-notification-r4"
STATUS_PROFILE = EXT + "backport-subscription-status-r4"
ERROR_SYSTEM = "http://terminology.hl7.org/CodeSystem/subscription-error"
TYPES = ("handshake", "heartbeat", "event-notification", "query-status", "query-event")


def instant(when: datetime | None = None) -> str:
    when = when or datetime.now(timezone.utc)
    return when.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def focus_url(st: SubState, ev: QueuedEvent) -> str:
    return f"{st.fhir_base}/{ev.focus_type}/{ev.focus_id}/_history/{ev.focus_version}"


def status_parameters(st: SubState, kind: str, events: list[QueuedEvent], content: str,
                      status: str | None = None) -> dict:
    status = status or st.status
    params: list[dict] = [{"name": "subscription", "valueReference": {"reference": st.reference}}]
    if content != "empty":
        params.append({"name": "topic", "valueCanonical": st.topic})
    params.append({"name": "status", "valueCode": status})
    params.append({"name": "type", "valueCode": kind})
    params.append({"name": "events-since-subscription-start", "valueString": str(st.events_since_start)})
    for ev in events:
        parts = [{"name": "event-number", "valueString": str(ev.number)},
                 {"name": "timestamp", "valueInstant": instant(ev.occurred_at)}]
        if content != "empty":
            parts.append({"name": "focus", "valueReference": {"reference": focus_url(st, ev)}})
        params.append({"name": "notification-event", "part": parts})
    if status == "error":
        params.append({"name": "error", "valueCodeableConcept": {
            "coding": [{"system": ERROR_SYSTEM, "code": "no-response", "display": "No Response"}],
            "text": "Notifications to the endpoint are failing; they are queued and retried"}})
    pid = str(uuid.uuid4())
    return {"resourceType": "Parameters", "id": pid, "meta": {"profile": [STATUS_PROFILE]}, "parameter": params}


def status_entry(st: SubState, parameters: dict) -> dict:
    return {"fullUrl": f"urn:uuid:{parameters['id']}", "resource": parameters,
            "request": {"method": "GET", "url": f"{st.reference}/$status"}, "response": {"status": "200"}}


def _resource_entry(st: SubState, ev: QueuedEvent) -> dict:
    path = f"{ev.focus_type}/{ev.focus_id}"
    method = {"create": "POST", "update": "PUT", "delete": "DELETE"}[ev.action]
    code = {"create": "201", "update": "200", "delete": "204"}[ev.action]
    entry = {"fullUrl": f"{st.fhir_base}/{path}",
             "request": {"method": method, "url": ev.focus_type if method == "POST" else path},
             "response": {"status": code, "etag": f'W/"{ev.focus_version}"'}}
    if ev.content is not None and ev.action != "delete":
        entry["resource"] = ev.content
        entry["response"]["lastModified"] = ev.content.get("meta", {}).get("lastUpdated")
    return entry


def notification(st: SubState, kind: str, events: list[QueuedEvent] = (), *, content: str | None = None,
                 status: str | None = None) -> dict:
    """A notification Bundle (also the body of ``$events``)."""
    assert kind in TYPES
    content = content or st.spec.content
    events = list(events)
    parameters = status_parameters(st, kind, events, content, status)
    entries = [status_entry(st, parameters)]
    if content == "full-resource":
        entries.extend(_resource_entry(st, ev) for ev in events)
    return {"resourceType": "Bundle", "id": str(uuid.uuid4()), "meta": {"profile": [BUNDLE_PROFILE]},
            "type": "history", "timestamp": instant(), "entry": entries}


def status_searchset(states: list[SubState]) -> dict:
    """``$status``: a searchset Bundle of SubscriptionStatus Parameters, one per Subscription."""
    entries = []
    for st in states:
        parameters = status_parameters(st, "query-status", [], "id-only")
        entries.append({"fullUrl": f"urn:uuid:{parameters['id']}", "resource": parameters,
                        "search": {"mode": "match"}})
    return {"resourceType": "Bundle", "id": str(uuid.uuid4()), "type": "searchset", "total": len(entries),
            "timestamp": instant(), "entry": entries}
