"""Reading and validating a topic-based Subscription (Backport IG profile ``backport-subscription``).

A Subscription this server accepts:

- ``criteria``: a topic canonical from ``topics.TOPICS``;
  ``criteria.extension`` (``_criteria`` in JSON) ``backport-filter-criteria`` valueString, zero or
  more, each ``<TopicResourceType>?<search parameters>`` (e.g. ``Task?owner=Practitioner/1``);
  all filters must match (logical AND). Parameters are this server's search parameters.
- ``channel.type`` = ``rest-hook``; ``channel.endpoint`` an http(s) URL;
  ``channel.header`` zero or more ``Name: value`` strings sent with every notification;
  ``channel.payload`` = ``application/fhir+json`` (or ``application/json``) with the extension
  ``backport-payload-content`` valueCode ``empty | id-only | full-resource`` (required);
  ``channel.extension`` ``backport-heartbeat-period`` (valueUnsignedInt, seconds),
  ``backport-timeout`` (valueUnsignedInt, seconds), ``backport-max-count`` (valuePositiveInt).
- ``status``: ``requested`` asks for a (new) handshake, ``off`` stops delivery; ``active`` and
  ``error`` are the server's to set: a client that sends them back unchanged (with the same
  channel and criteria) keeps the current state, otherwise it is read as ``requested``.
Every problem is a 422 OperationOutcome naming the element.

A classic R4 criteria-based Subscription (HAPI FHIR, Smile CDR, Medplum) is read by
:func:`parse` too, when ``criteria`` is a search (``DocumentReference?status=current`` or just
``Task``) rather than a topic canonical: ``channel.type`` = ``rest-hook``, ``channel.endpoint``,
``channel.header``, and ``channel.payload`` = ``application/fhir+json`` (each matching version is
POSTed as the body) or absent (an empty POST). Its spec has ``style`` ``r4``, the pseudo-topic
``r4-criteria:<Type>``, the criteria as its one filter, content ``full-resource`` or ``empty``, no
heartbeat and one event per notification. As in R4, there is no handshake: ``requested`` becomes
``active`` at once, and deletions notify nothing (the criteria apply to the new version).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import parse_qsl, urlsplit

from services.ehr import search
from services.ehr.outcome import FhirError, issue, unprocessable
from services.ehr.subscriptions.topics import TOPICS
from services.ehr.validation import resource_types

EXT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
FILTER_CRITERIA = EXT + "backport-filter-criteria"
PAYLOAD_CONTENT = EXT + "backport-payload-content"
HEARTBEAT_PERIOD = EXT + "backport-heartbeat-period"
TIMEOUT = EXT + "backport-timeout"
MAX_COUNT = EXT + "backport-max-count"
PROFILE = EXT + "backport-subscription"

CONTENTS = ("empty", "id-only", "full-resource")
PAYLOAD_TYPES = ("application/fhir+json", "application/json")
#: Delivery timeout when the Subscription sets none, and the most it may ask for.
DEFAULT_TIMEOUT_S = 10
MAX_TIMEOUT_S = 120
#: Events per notification when backport-max-count is absent, and the most it may ask for.
DEFAULT_MAX_COUNT = 20
MAX_MAX_COUNT = 1000
MIN_HEARTBEAT_S = 1
#: The two styles: Backport IG topics, classic R4 criteria.
BACKPORT, R4 = "backport", "r4"
R4_TOPIC_PREFIX = "r4-criteria:"
#: R4 criteria apply to the new version of a created or updated resource (no notification on delete).
R4_ACTIONS = ("create", "update")
MAX_HEADERS = 10
_HEADER = re.compile(r"^([A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}):[ \t]*([^\r\n]{0,4096})$")
_RESERVED_HEADERS = ("content-type", "content-length", "host", "transfer-encoding", "connection")


@dataclass(frozen=True)
class Filter:
    resource_type: str
    query: str  # the search parameters part (after "?")


@dataclass(frozen=True)
class SubscriptionSpec:
    topic: str
    filters: tuple[Filter, ...]
    endpoint: str
    headers: tuple[tuple[str, str], ...]
    payload_type: str
    content: str
    heartbeat_s: int | None
    timeout_s: int
    max_count: int
    client_status: str  # requested | active | error | off, as the client wrote it
    end: datetime | None
    style: str = BACKPORT  # backport | r4

    def as_json(self) -> dict:
        return {"topic": self.topic, "filters": [[f.resource_type, f.query] for f in self.filters],
                "endpoint": self.endpoint, "headers": [list(h) for h in self.headers],
                "payload_type": self.payload_type, "content": self.content, "heartbeat_s": self.heartbeat_s,
                "timeout_s": self.timeout_s, "max_count": self.max_count,
                "client_status": self.client_status, "end": self.end.isoformat() if self.end else None,
                "style": self.style}

    def same_channel(self, other: "SubscriptionSpec") -> bool:
        """Equal apart from the status the client wrote."""
        return {**self.as_json(), "client_status": ""} == {**other.as_json(), "client_status": ""}

    @classmethod
    def from_json(cls, data: dict) -> "SubscriptionSpec":
        return cls(data["topic"], tuple(Filter(t, q) for t, q in data["filters"]), data["endpoint"],
                   tuple((k, v) for k, v in data["headers"]), data["payload_type"], data["content"],
                   data["heartbeat_s"], data["timeout_s"], data["max_count"], data["client_status"],
                   datetime.fromisoformat(data["end"]) if data.get("end") else None, data.get("style", BACKPORT))


class _Problems:
    def __init__(self):
        self.issues: list[dict] = []

    def add(self, expression: str, text: str) -> None:
        self.issues.append(issue("invalid", text, expression=expression))


def _ext_values(element: dict | None, url: str) -> list:
    out = []
    for ext in (element or {}).get("extension") or []:
        if isinstance(ext, dict) and ext.get("url") == url:
            out.append(next((v for k, v in ext.items() if k.startswith("value")), None))
    return out


def _one_int(element: dict, url: str, name: str, low: int, high: int, problems: _Problems) -> int | None:
    values = _ext_values(element, url)
    if not values:
        return None
    value = values[0]
    if len(values) > 1 or isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        problems.add(f"Subscription.channel.extension({name})", f"{name} must be one whole number in {low}..{high}")
        return None
    return value


def _filters(resource: dict, topic_type: str | None, problems: _Problems) -> tuple[Filter, ...]:
    out = []
    for i, value in enumerate(_ext_values(resource.get("_criteria"), FILTER_CRITERIA)):
        where = f"Subscription.criteria.extension(filter-criteria)[{i}]"
        if not isinstance(value, str) or "?" not in value:
            problems.add(where, "filter criteria must be a string like 'Task?owner=Practitioner/123'")
            continue
        rtype, _, query = value.partition("?")
        if topic_type and rtype != topic_type:
            problems.add(where, f"filter criteria must be on {topic_type}, the resource type of the topic")
            continue
        pairs = parse_qsl(query, keep_blank_values=True)
        if not pairs:
            problems.add(where, "filter criteria need at least one search parameter")
            continue
        try:
            search.parse(rtype, pairs)
        except FhirError as exc:
            problems.add(where, f"filter criteria are not a valid search: {exc.diagnostics}")
            continue
        out.append(Filter(rtype, query))
    return tuple(out)


def _headers(channel: dict, problems: _Problems) -> tuple[tuple[str, str], ...]:
    raw = channel.get("header") or []
    if len(raw) > MAX_HEADERS:
        problems.add("Subscription.channel.header", f"at most {MAX_HEADERS} headers")
        return ()
    out = []
    for i, text in enumerate(raw):
        m = _HEADER.match(text) if isinstance(text, str) else None
        if not m or m.group(1).lower() in _RESERVED_HEADERS:
            problems.add(f"Subscription.channel.header[{i}]", "a header must be 'Name: value' (and not a "
                                                              "transport header such as Content-Type)")
            continue
        out.append((m.group(1), m.group(2).strip()))
    return tuple(out)


def r4_topic(resource_type: str) -> str:
    return R4_TOPIC_PREFIX + resource_type


def is_r4_criteria(criteria: object) -> bool:
    """A search (``Type`` or ``Type?params``), not a topic canonical URL."""
    return isinstance(criteria, str) and bool(_R4_CRITERIA.match(criteria))


_R4_CRITERIA = re.compile(r"^[A-Z][A-Za-z]{1,63}(\?.*)?$")


def _common(resource: dict, problems: _Problems) -> tuple[str, tuple, str, datetime | None]:
    """endpoint, headers, status and end: read the same way in both styles."""
    channel = resource.get("channel") if isinstance(resource.get("channel"), dict) else {}
    if channel.get("type") != "rest-hook":
        problems.add("Subscription.channel.type", "only the rest-hook channel is supported")
    endpoint = channel.get("endpoint") if isinstance(channel.get("endpoint"), str) else ""
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        problems.add("Subscription.channel.endpoint", "a rest-hook needs an absolute http(s) endpoint URL")
    headers = _headers(channel, problems)
    status = resource.get("status")
    if status not in ("requested", "active", "error", "off"):
        problems.add("Subscription.status", "status must be requested, active, error or off")
    end = None
    if resource.get("end"):
        try:
            end = datetime.fromisoformat(str(resource["end"]).replace("Z", "+00:00"))
            if end.tzinfo is None:
                end = end.replace(tzinfo=timezone.utc)
        except ValueError:
            problems.add("Subscription.end", "end must be an instant")
    return endpoint, headers, status, end


def _parse_r4(resource: dict) -> SubscriptionSpec:
    problems = _Problems()
    rtype, _, query = resource["criteria"].partition("?")
    filters: tuple[Filter, ...] = ()
    if rtype == "Subscription" or rtype not in resource_types():
        problems.add("Subscription.criteria", "criteria must be a search on a resource type this server holds, "
                                              "e.g. DocumentReference?status=current")
    elif query:
        try:
            search.parse(rtype, parse_qsl(query, keep_blank_values=True))
            filters = (Filter(rtype, query),)
        except FhirError as exc:
            problems.add("Subscription.criteria", f"criteria are not a valid search: {exc.diagnostics}")
    channel = resource.get("channel") if isinstance(resource.get("channel"), dict) else {}
    payload_type = channel.get("payload") or ""
    if payload_type and payload_type not in PAYLOAD_TYPES:
        problems.add("Subscription.channel.payload", f"payload must be absent (an empty notification) or one of "
                                                     f"{', '.join(PAYLOAD_TYPES)}")
    endpoint, headers, status, end = _common(resource, problems)
    if problems.issues:
        raise unprocessable("The Subscription is not a valid R4 criteria-based subscription", problems.issues)
    return SubscriptionSpec(r4_topic(rtype), filters, endpoint, headers, payload_type,
                            "full-resource" if payload_type else "empty", None, DEFAULT_TIMEOUT_S, 1,
                            status, end, R4)


def parse(resource: dict) -> SubscriptionSpec:
    """The spec of a (structurally valid) Subscription, or a 422 FhirError listing every problem."""
    if is_r4_criteria(resource.get("criteria")):
        return _parse_r4(resource)
    problems = _Problems()
    topic_url = resource.get("criteria")
    topic = TOPICS.get(topic_url) if isinstance(topic_url, str) else None
    if topic is None:
        problems.add("Subscription.criteria", "criteria must be one of this server's topic canonicals: "
                                              + ", ".join(sorted(TOPICS)))
    filters = _filters(resource, topic.resource_type if topic else None, problems)
    endpoint, headers, status, end = _common(resource, problems)
    channel = resource.get("channel") if isinstance(resource.get("channel"), dict) else {}
    payload_type = channel.get("payload") or ""
    if payload_type not in PAYLOAD_TYPES:
        problems.add("Subscription.channel.payload", f"payload must be one of {', '.join(PAYLOAD_TYPES)}")
    contents = _ext_values(channel.get("_payload"), PAYLOAD_CONTENT)
    content = contents[0] if len(contents) == 1 else None
    if content not in CONTENTS:
        problems.add("Subscription.channel.payload.extension(content)",
                     f"exactly one backport-payload-content is required: {' | '.join(CONTENTS)}")
    heartbeat = _one_int(channel, HEARTBEAT_PERIOD, "heartbeatPeriod", MIN_HEARTBEAT_S, 86400 * 7, problems)
    timeout = _one_int(channel, TIMEOUT, "timeout", 1, MAX_TIMEOUT_S, problems)
    max_count = _one_int(channel, MAX_COUNT, "maxCount", 1, MAX_MAX_COUNT, problems)
    if problems.issues:
        raise unprocessable("The Subscription is not a valid topic-based subscription", problems.issues)
    return SubscriptionSpec(topic.url, filters, endpoint, headers, payload_type, content, heartbeat,
                            timeout or DEFAULT_TIMEOUT_S, max_count or DEFAULT_MAX_COUNT,
                            status, end)
