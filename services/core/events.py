"""The event envelope: CloudEvents 1.0 in Kafka binary mode.

An ``Event`` is what stages exchange. On the wire it is a Kafka record whose key is the
patient id, whose value is the JSON ``data`` and whose headers are ``ce_*`` attributes
(``cloudevents.core.bindings.kafka``), with the extensions ``tenant``, ``traceparent``,
``correlationid`` and ``causationid``.

    ev = Event.new("vigil.ehr.resource-changed", source="/ingest/northvalley",
                   tenant="northvalley", key="patient-1", data={...},
                   id=deterministic_id("DocumentReference", "doc-1", "3"))
    out = ev.child("vigil.extraction.findings", {...}, stage="extraction")
    record = encode(out)                      # Record(key, value, headers)
    same = decode(record.key, record.value, record.headers)

Ids are deterministic wherever the input is: ``child`` derives the id from (parent id,
stage, type, index), so a redelivered input produces outputs with the same ids and the
downstream idempotency ledger drops the repeats. ``decode`` raises
``services.core.errors.ValidationError`` for anything that is not a well-formed event;
payload validation against ``schemas/`` lives in ``services.core.schemas``.

Hot path: ``encode`` (``encode_parts``: the same as a plain tuple) and ``decode`` map the
attributes to ``ce_*`` headers directly when
the envelope is one this module writes (the known attributes, non-empty strings, RFC 3339
time); they produce exactly what the ``cloudevents`` binding produces (the unit tests compare
both). Anything else - unknown extensions, odd time formats, empty or missing attributes,
undecodable bytes - goes through the ``cloudevents`` library, so malformed input gets the
library's validation and the same error.
"""
from __future__ import annotations

import hashlib
import os
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, NamedTuple

from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.exceptions import BaseCloudEventException
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from services.core.errors import ValidationError
from services.core.jsoncodec import dumps as _dumps, loads as _loads

CONTENT_TYPE = "application/json"
EXTENSIONS = ("tenant", "traceparent", "correlationid", "causationid")
_FORMAT = JSONFormat()
_CONTENT_TYPE = CONTENT_TYPE.encode()
#: The headers ``encode`` writes; any other ``ce_*`` header sends a record through the library path.
_KNOWN_NAMES = frozenset({"ce_id", "ce_type", "ce_source", "ce_specversion", "ce_time", "content-type", "ce_tenant",
                          "ce_subject", "ce_traceparent", "ce_correlationid", "ce_causationid"})
#: Times the fast path parses (``datetime.fromisoformat`` and dateutil's ``isoparse`` agree on these).
_RFC3339_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})")
#: Characters a CloudEvents string must not hold (spec, type system): ids reach Redis keys and logs.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_ID_NAMESPACE = uuid.UUID("6f1c2f4e-52a4-4c61-9a43-3b1f0e0c7a11")
_NAMESPACE_BYTES = _ID_NAMESPACE.bytes
_sha1 = hashlib.sha1
_fromisoformat = datetime.fromisoformat
_UTC = timezone.utc
#: Hex digit -> the same digit with the RFC 4122 variant bits (10xx) set.
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def deterministic_id(*parts: Any) -> str:
    """A stable UUID (v5) from the given parts; same parts, same id, in every process.

    Equal to ``str(uuid.uuid5(_ID_NAMESPACE, "\\x1f".join(map(str, parts))))`` (RFC 4122 s4.3:
    SHA-1 of namespace + name, first 16 bytes, version 5 and variant bits set), written straight
    from the digest's hex; the unit tests compare both."""
    return _uuid5("\x1f".join(map(str, parts)))


def _uuid5(name: str) -> str:
    x = _sha1(_NAMESPACE_BYTES + name.encode("utf-8")).hexdigest()
    return f"{x[:8]}-{x[8:12]}-5{x[13:16]}-{_VARIANT[x[16]]}{x[17:20]}-{x[20:32]}"


def new_traceparent() -> str:
    """A fresh W3C traceparent (version 00, sampled)."""
    return f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-01"


def trace_id(traceparent: str | None) -> str | None:
    """The trace id part of a traceparent, for logs."""
    parts = (traceparent or "").split("-")
    return parts[1] if len(parts) == 4 else None


def _now() -> datetime:
    return datetime.now(_UTC)


class Record(NamedTuple):
    """A Kafka record ready for aiokafka: ``send(topic, value, key=key, headers=headers)``."""

    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    source: str
    tenant: str
    key: str | None
    data: dict = field(hash=False)
    time: datetime = field(default_factory=_now)
    subject: str | None = None
    correlationid: str | None = None
    causationid: str | None = None
    traceparent: str | None = None

    @classmethod
    def new(cls, type: str, *, source: str, tenant: str, key: str | None, data: dict,
            id: str | None = None, subject: str | None = None, traceparent: str | None = None,
            correlationid: str | None = None) -> "Event":
        """A root event (one that no other event caused). Pass a deterministic ``id`` when the
        input has a natural identity (resource id + version, HL7 control id): a re-sent input
        then yields the same event id and is processed once."""
        event_id = id or str(uuid.uuid4())
        return cls(id=event_id, type=type, source=source, tenant=tenant, key=key, data=data,
                   subject=subject, traceparent=traceparent or new_traceparent(),
                   correlationid=correlationid or event_id, causationid=None)

    def child(self, type: str, data: dict, *, stage: str, index: int = 0, key: str | None = None,
              subject: str | None = None) -> "Event":
        """An event caused by this one: id = hash(parent id, stage, type, index); same tenant,
        key (unless given), trace and correlation; causation = this event."""
        child_id = _uuid5(f"{self.id}\x1f{stage}\x1f{type}\x1f{index}")  # deterministic_id(id, stage, type, index)
        return _built(child_id, type, f"/{stage}/{self.tenant}", self.tenant,
                      self.key if key is None else key, data, _now(), subject, self.correlationid or self.id,
                      self.id, self.traceparent)

    @property
    def trace_id(self) -> str | None:
        return trace_id(self.traceparent)

    def log_fields(self) -> dict:
        """Fields safe for a log line (no payload, no patient id)."""
        return {"tenant": self.tenant, "event_id": self.id, "event_type": self.type, "trace_id": self.trace_id}


_new_object = object.__new__


def _built(id, type, source, tenant, key, data, time, subject, correlationid, causationid, traceparent) -> Event:
    """``Event(...)`` for the hot paths (decode, child): the frozen dataclass's ``__init__`` sets each
    field through ``object.__setattr__``; filling the instance dict directly gives the same object
    at a fraction of the cost. Callers pass values of the declared types."""
    event = _new_object(Event)
    event.__dict__.update(id=id, type=type, source=source, tenant=tenant, key=key, data=data, time=time,
                          subject=subject, correlationid=correlationid, causationid=causationid,
                          traceparent=traceparent)
    return event


def encode(event: Event) -> Record:
    """Event -> Kafka binary-mode record. The data is compact JSON (UTF-8)."""
    return Record(*encode_parts(event))


def encode_parts(event: Event) -> tuple[bytes | None, bytes, list[tuple[str, bytes]]]:
    """``encode`` as a plain ``(key, value, headers)`` tuple, for the hot paths that unpack it at once."""
    if not isinstance(event.data, dict):
        raise ValidationError(f"{event.type}: data must be a JSON object", code="envelope")
    headers = _fast_headers(event)
    if headers is None:
        headers = _library_headers(event)
    return event.key.encode("utf-8") if event.key is not None else None, _dumps(event.data), headers


def _attributes(event: Event) -> dict[str, Any]:
    attributes: dict[str, Any] = {"id": event.id, "type": event.type, "source": event.source,
                                  "specversion": "1.0", "time": event.time, "datacontenttype": CONTENT_TYPE,
                                  "tenant": event.tenant}
    for name in ("subject", "traceparent", "correlationid", "causationid"):
        value = getattr(event, name)
        if value is not None:
            attributes[name] = value
    return attributes


def _fast_headers(event: Event) -> list[tuple[str, bytes]] | None:
    """The headers ``cloudevents`` would write, for an envelope it would accept; else None."""
    id_, type_, source, tenant, when, subject = event.id, event.type, event.source, event.tenant, event.time, \
        event.subject
    if not (type(id_) is str and id_ and type(type_) is str and type_ and type(source) is str and source
            and type(tenant) is str and isinstance(when, datetime) and when.tzinfo is not None
            and (subject is None or (type(subject) is str and subject))):
        return None
    headers = [("ce_id", id_.encode()), ("ce_type", type_.encode()), ("ce_source", source.encode()),
               ("ce_specversion", b"1.0"), ("ce_time", _rfc3339(when).encode()), ("content-type", _CONTENT_TYPE),
               ("ce_tenant", tenant.encode())]
    if subject is not None:
        headers.append(("ce_subject", subject.encode()))
    for name, value in (("ce_traceparent", event.traceparent), ("ce_correlationid", event.correlationid),
                        ("ce_causationid", event.causationid)):  # the library's order
        if value is not None:
            if type(value) is not str:
                return None
            headers.append((name, value.encode()))
    return headers


#: "YYYY-MM-DDTHH:MM:SS" of the last few seconds seen, by (year, month, day, hour, minute, second).
_SECONDS: dict[tuple[int, ...], str] = {}
_SECONDS_KEPT = 64


def _rfc3339(when: datetime) -> str:
    """``when.isoformat()``, with "Z" for a zero offset. A UTC time (every time this module makes)
    is formatted from the text of its second, cached: half the cost of ``isoformat``."""
    if when.tzinfo is not _UTC:
        text = when.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    second = (when.year, when.month, when.day, when.hour, when.minute, when.second)
    prefix = _SECONDS.get(second)
    if prefix is None:
        if len(_SECONDS) >= _SECONDS_KEPT:
            _SECONDS.clear()
        prefix = _SECONDS[second] = when.replace(microsecond=0).isoformat()[:-6]
    micro = when.microsecond
    return f"{prefix}.{micro:06d}Z" if micro else prefix + "Z"


def _library_headers(event: Event) -> list[tuple[str, bytes]]:
    try:
        ce = CloudEvent(_attributes(event), None)
    except BaseCloudEventException as exc:
        raise ValidationError(f"invalid CloudEvents envelope: {_short(exc)}", code="envelope") from None
    return list(ce_kafka.to_binary(ce, _FORMAT, key_mapper=lambda _e: None).headers.items())


def decode(key: bytes | None, value: bytes | None, headers: Iterable[tuple[str, bytes]]) -> Event:
    """Kafka binary-mode record -> Event; ``ValidationError`` if it is not a well-formed event."""
    attrs = _fast_attributes(headers)
    if attrs is None:
        attrs = _library_attributes(_header_map(headers))
    id_, type_, source, tenant, when, subject, correlationid, causationid, traceparent = attrs
    if not id_.isprintable() and _CONTROL.search(id_):
        raise ValidationError(f"{type_}: event id holds a control character", code="envelope")
    try:
        data = _loads(value or b"")
    except (ValueError, UnicodeDecodeError):
        raise ValidationError(f"{type_}: payload is not JSON", code="payload_json") from None
    if not isinstance(data, dict):
        raise ValidationError(f"{type_}: payload must be a JSON object", code="payload_json")
    if not tenant:
        raise ValidationError(f"{type_}: tenant extension missing", code="envelope")
    return _built(id_, type_, source, tenant, key.decode("utf-8", "replace") if key is not None else None, data,
                  when or _now(), subject, correlationid, causationid, traceparent)


def _header_map(headers: Iterable[tuple[str, bytes]]) -> dict[str, bytes]:
    """The ``ce_*`` and content-type headers (the last of repeated names); ValidationError if the
    record is not a CloudEvent at all."""
    header_map = {name: raw for name, raw in (headers or ()) if name.startswith("ce_") or name == "content-type"}
    if "ce_id" not in header_map or "ce_type" not in header_map:
        raise ValidationError("not a CloudEvents binary-mode record (ce_id/ce_type headers missing)", code="envelope")
    return header_map


def _fast_attributes(headers: Iterable[tuple[str, bytes]]) -> tuple | None:
    """``(id, type, source, tenant, time, subject, correlationid, causationid, traceparent)`` of
    an envelope as ``encode`` writes it (repeated names: the last counts); None for anything else
    (the library path decides, and names the error)."""
    try:
        found = dict(headers or ())
        get = found.get
        if get("ce_specversion") != b"1.0":
            return None
        if not found.keys() <= _KNOWN_NAMES and any(name.startswith("ce_") for name in found.keys() - _KNOWN_NAMES):
            return None
        if None in found.values():  # a header without a value
            return None
        id_, type_, source = found["ce_id"].decode(), found["ce_type"].decode(), found["ce_source"].decode()
        subject = get("ce_subject")
        if not (id_ and type_ and source) or subject == b"" or get("content-type") == b"":
            return None
        when = get("ce_time")
        if when is not None:
            when = when.decode()
            if not _RFC3339_TIME.fullmatch(when):
                return None
            when = _fromisoformat(when)
        tenant, correlationid, causationid, traceparent = (get("ce_tenant"), get("ce_correlationid"),
                                                           get("ce_causationid"), get("ce_traceparent"))
        return (id_, type_, source, tenant if tenant is None else tenant.decode(), when,
                subject if subject is None else subject.decode(),
                correlationid if correlationid is None else correlationid.decode(),
                causationid if causationid is None else causationid.decode(),
                traceparent if traceparent is None else traceparent.decode())
    except (KeyError, AttributeError, TypeError, ValueError):  # UnicodeDecodeError is a ValueError
        return None


def _library_attributes(header_map: dict[str, bytes]) -> tuple:
    try:
        message = ce_kafka.KafkaMessage(headers=header_map, key=None, value=b"")
        ce = ce_kafka.from_binary(message, _FORMAT)
    except (BaseCloudEventException, ValueError, UnicodeDecodeError, AttributeError) as exc:
        # AttributeError: a header without a value (None), which Kafka allows.
        raise ValidationError(f"invalid CloudEvents envelope: {_short(exc)}", code="envelope") from None
    return (ce.get_id(), ce.get_type(), ce.get_source(), ce.get_extension("tenant"), ce.get_time(),
            ce.get_subject(), ce.get_extension("correlationid"), ce.get_extension("causationid"),
            ce.get_extension("traceparent"))


def header_value(headers: Iterable[tuple[str, bytes]], name: str) -> str | None:
    """One header as text (first occurrence), or None."""
    for key, raw in headers or ():
        if key == name:
            return raw.decode("utf-8", "replace") if raw is not None else None
    return None


def _short(exc: BaseException) -> str:
    return str(exc).replace("\n", " ")[:160]
