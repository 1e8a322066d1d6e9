"""Read an R4 Backport IG notification Bundle into plain values (no I/O).

A notification is a Bundle of type ``history`` whose first entry is a ``Parameters``
resource (the R4 form of SubscriptionStatus) with parts ``subscription``, ``topic``,
``status``, ``type``, ``events-since-subscription-start`` and zero or more
``notification-event`` (``event-number``, ``timestamp``, ``focus``). The content level
follows from what is present: no focus = ``empty``; a focus without the resource in the
bundle = ``id-only``; the resource in the bundle = ``full-resource``.
Anything malformed raises ``BadNotification`` with a path (never a value): a 400.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

TYPES = ("handshake", "heartbeat", "event-notification", "query-status", "query-event")
STATUSES = ("requested", "active", "error", "off", "entered-in-error")
REFERENCE = re.compile(r"^(?:(?P<base>.*?)/)?(?P<type>[A-Z][A-Za-z]{1,63})/(?P<id>[A-Za-z0-9\-.]{1,64})"
                       r"(?:/_history/(?P<version>[A-Za-z0-9\-.]{1,64}))?$")
MAX_EVENTS = 1000
#: Event numbers are bigints: at most 19 ASCII digits ("²" is a digit to str.isdigit, not to int).
_DIGITS = re.compile(r"[0-9]{1,19}")


class BadNotification(ValueError):
    """The request body is not a valid notification; ``path`` says where."""

    def __init__(self, message: str, path: str = ""):
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path


@dataclass(frozen=True)
class Focus:
    resource_type: str
    id: str
    version: str | None

    @property
    def key(self) -> str:
        return f"{self.resource_type}/{self.id}"


@dataclass(frozen=True)
class NotificationEvent:
    number: int
    timestamp: str | None
    focus: Focus | None


@dataclass(frozen=True)
class Notification:
    subscription: Focus
    topic: str | None
    status: str | None
    type: str
    events_since_start: int | None
    events: tuple[NotificationEvent, ...]
    resources: dict = field(default_factory=dict, hash=False)  # "Type/id" or "Type/id/_history/v" -> resource

    @property
    def subscription_id(self) -> str:
        return self.subscription.id

    def content_level(self) -> str:
        if not self.events or all(e.focus is None for e in self.events):
            return "empty"
        if all(e.focus is not None and self.resource_for(e.focus) is not None for e in self.events):
            return "full-resource"
        return "id-only"

    def resource_for(self, focus: Focus) -> dict | None:
        if focus.version:
            found = self.resources.get(f"{focus.key}/_history/{focus.version}")
            if found is not None:
                return found
        found = self.resources.get(focus.key)
        if found is not None and focus.version and str((found.get("meta") or {}).get("versionId")) != focus.version:
            return None
        return found


def parse_reference(text, path: str) -> Focus:
    if not isinstance(text, str) or not text or len(text) > 2048:
        raise BadNotification("expected a reference string", path)
    match = REFERENCE.match(text.strip())
    if not match:
        raise BadNotification("not a resource reference (Type/id[/_history/version])", path)
    return Focus(match["type"], match["id"], match["version"])


def _int(value, path: str) -> int:
    if isinstance(value, bool):
        raise BadNotification("expected a whole number", path)
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        number = int(value.strip())
    else:
        raise BadNotification("expected a whole number", path)
    if not 0 <= number < 2 ** 63:
        raise BadNotification("number out of range", path)
    return number


def _value(part: dict, path: str, *names: str):
    for name in names:
        if name in part:
            return part[name]
    return None


def _reference_value(part: dict, path: str) -> Focus:
    value = part.get("valueReference")
    if not isinstance(value, dict):
        raise BadNotification("expected valueReference", path)
    return parse_reference(value.get("reference"), f"{path}.valueReference.reference")


def _event(part: dict, path: str) -> NotificationEvent:
    number = timestamp = focus = None
    parts = part.get("part")
    if not isinstance(parts, list):
        raise BadNotification("notification-event needs parts", path)
    for i, sub in enumerate(parts):
        sub_path = f"{path}.part[{i}]"
        if not isinstance(sub, dict):
            raise BadNotification("expected an object", sub_path)
        name = sub.get("name")
        if name == "event-number":
            number = _int(_value(sub, sub_path, "valueString", "valueUnsignedInt", "valueInteger",
                                 "valueInteger64", "valueDecimal"), f"{sub_path}.value")
        elif name == "timestamp":
            ts = _value(sub, sub_path, "valueInstant", "valueDateTime")
            timestamp = ts if isinstance(ts, str) else None
        elif name == "focus":
            focus = _reference_value(sub, sub_path)
    if number is None:
        raise BadNotification("notification-event needs an event-number", path)
    return NotificationEvent(number, timestamp, focus)


def _entry_key(entry: dict, resource: dict) -> list[str]:
    keys = []
    rtype, rid = resource.get("resourceType"), resource.get("id")
    version = (resource.get("meta") or {}).get("versionId") if isinstance(resource.get("meta"), dict) else None
    if isinstance(rtype, str) and isinstance(rid, str):
        keys.append(f"{rtype}/{rid}")
        if version:
            keys.append(f"{rtype}/{rid}/_history/{version}")
    return keys


def parse_notification(body) -> Notification:
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        raise BadNotification("expected a Bundle", "resourceType")
    if body.get("type") != "history":
        raise BadNotification("notification Bundle must have type history", "Bundle.type")
    entries = body.get("entry")
    if not isinstance(entries, list) or not entries:
        raise BadNotification("notification Bundle needs a SubscriptionStatus entry", "Bundle.entry")
    first = entries[0].get("resource") if isinstance(entries[0], dict) else None
    if not isinstance(first, dict) or first.get("resourceType") != "Parameters":
        raise BadNotification("first entry must be a Parameters (SubscriptionStatus)", "Bundle.entry[0].resource")
    params = first.get("parameter")
    if not isinstance(params, list):
        raise BadNotification("SubscriptionStatus needs parameters", "Parameters.parameter")
    values: dict = {}
    events: list[NotificationEvent] = []
    for i, part in enumerate(params):
        path = f"Parameters.parameter[{i}]"
        if not isinstance(part, dict) or not isinstance(part.get("name"), str):
            raise BadNotification("expected a named parameter", path)
        name = part["name"]
        if name == "subscription":
            values["subscription"] = _reference_value(part, path)
        elif name == "topic":
            topic = _value(part, path, "valueCanonical", "valueUri", "valueString")
            values["topic"] = topic if isinstance(topic, str) else None
        elif name == "status":
            values["status"] = _value(part, path, "valueCode")
        elif name == "type":
            values["type"] = _value(part, path, "valueCode")
        elif name == "events-since-subscription-start":
            values["since"] = _int(_value(part, path, "valueString", "valueUnsignedInt", "valueInteger",
                                          "valueInteger64", "valueDecimal"), f"{path}.value")
        elif name == "notification-event":
            if len(events) >= MAX_EVENTS:
                raise BadNotification(f"more than {MAX_EVENTS} events in one notification", path)
            events.append(_event(part, path))
    if "subscription" not in values:
        raise BadNotification("subscription is required", "Parameters.parameter(subscription)")
    if values.get("type") not in TYPES:
        raise BadNotification(f"type must be one of {', '.join(TYPES)}", "Parameters.parameter(type)")
    status = values.get("status")
    if status is not None and status not in STATUSES:
        raise BadNotification(f"status must be one of {', '.join(STATUSES)}", "Parameters.parameter(status)")
    resources: dict = {}
    for i, entry in enumerate(entries[1:], start=1):
        if not isinstance(entry, dict):
            raise BadNotification("expected an object", f"Bundle.entry[{i}]")
        resource = entry.get("resource")
        if resource is None:
            continue
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            raise BadNotification("entry resource needs a resourceType", f"Bundle.entry[{i}].resource")
        for key in _entry_key(entry, resource):
            resources[key] = resource
    numbers = [e.number for e in events]
    if len(set(numbers)) != len(numbers):
        raise BadNotification("event numbers repeat within one notification", "notification-event.event-number")
    return Notification(subscription=values["subscription"], topic=values.get("topic"), status=status,
                        type=values["type"], events_since_start=values.get("since"),
                        events=tuple(sorted(events, key=lambda e: e.number)), resources=resources)
