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
"""
from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable

from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.exceptions import BaseCloudEventException
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from services.core.errors import ValidationError

CONTENT_TYPE = "application/json"
EXTENSIONS = ("tenant", "traceparent", "correlationid", "causationid")
_FORMAT = JSONFormat()
_ID_NAMESPACE = uuid.UUID("6f1c2f4e-52a4-4c61-9a43-3b1f0e0c7a11")


def deterministic_id(*parts: Any) -> str:
    """A stable UUID (v5) from the given parts; same parts, same id, in every process."""
    return str(uuid.uuid5(_ID_NAMESPACE, "\x1f".join(str(p) for p in parts)))


def new_traceparent() -> str:
    """A fresh W3C traceparent (version 00, sampled)."""
    return f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-01"


def trace_id(traceparent: str | None) -> str | None:
    """The trace id part of a traceparent, for logs."""
    parts = (traceparent or "").split("-")
    return parts[1] if len(parts) == 4 else None


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Record:
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
        return Event(id=deterministic_id(self.id, stage, type, index), type=type, source=f"/{stage}/{self.tenant}",
                     tenant=self.tenant, key=self.key if key is None else key, data=data, subject=subject,
                     correlationid=self.correlationid or self.id, causationid=self.id,
                     traceparent=self.traceparent)

    @property
    def trace_id(self) -> str | None:
        return trace_id(self.traceparent)

    def log_fields(self) -> dict:
        """Fields safe for a log line (no payload, no patient id)."""
        return {"tenant": self.tenant, "event_id": self.id, "event_type": self.type, "trace_id": self.trace_id}


def encode(event: Event) -> Record:
    """Event -> Kafka binary-mode record. The data is compact JSON (UTF-8)."""
    if not isinstance(event.data, dict):
        raise ValidationError(f"{event.type}: data must be a JSON object", code="envelope")
    attributes: dict[str, Any] = {"id": event.id, "type": event.type, "source": event.source,
                                  "specversion": "1.0", "time": event.time, "datacontenttype": CONTENT_TYPE,
                                  "tenant": event.tenant}
    for name in ("subject", "traceparent", "correlationid", "causationid"):
        value = getattr(event, name)
        if value is not None:
            attributes[name] = value
    try:
        ce = CloudEvent(attributes, None)
    except BaseCloudEventException as exc:
        raise ValidationError(f"invalid CloudEvents envelope: {_short(exc)}", code="envelope") from None
    message = ce_kafka.to_binary(ce, _FORMAT, key_mapper=lambda _e: None)
    value = json.dumps(event.data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    key = event.key.encode("utf-8") if event.key is not None else None
    return Record(key=key, value=value, headers=list(message.headers.items()))


def decode(key: bytes | None, value: bytes | None, headers: Iterable[tuple[str, bytes]]) -> Event:
    """Kafka binary-mode record -> Event; ``ValidationError`` if it is not a well-formed event."""
    header_map = {name: raw for name, raw in (headers or ()) if name.startswith("ce_") or name == "content-type"}
    if "ce_id" not in header_map or "ce_type" not in header_map:
        raise ValidationError("not a CloudEvents binary-mode record (ce_id/ce_type headers missing)", code="envelope")
    try:
        message = ce_kafka.KafkaMessage(headers=header_map, key=None, value=b"")
        ce = ce_kafka.from_binary(message, _FORMAT)
    except (BaseCloudEventException, ValueError, UnicodeDecodeError) as exc:
        raise ValidationError(f"invalid CloudEvents envelope: {_short(exc)}", code="envelope") from None
    try:
        data = json.loads(value or b"")
    except (ValueError, UnicodeDecodeError):
        raise ValidationError(f"{ce.get_type()}: payload is not JSON", code="payload_json") from None
    if not isinstance(data, dict):
        raise ValidationError(f"{ce.get_type()}: payload must be a JSON object", code="payload_json")
    tenant = ce.get_extension("tenant")
    if not tenant:
        raise ValidationError(f"{ce.get_type()}: tenant extension missing", code="envelope")
    return Event(id=ce.get_id(), type=ce.get_type(), source=ce.get_source(), tenant=tenant,
                 key=key.decode("utf-8", "replace") if key is not None else None, data=data,
                 time=ce.get_time() or _now(), subject=ce.get_subject(),
                 correlationid=ce.get_extension("correlationid"), causationid=ce.get_extension("causationid"),
                 traceparent=ce.get_extension("traceparent"))


def header_value(headers: Iterable[tuple[str, bytes]], name: str) -> str | None:
    """One header as text (first occurrence), or None."""
    for key, raw in headers or ():
        if key == name:
            return raw.decode("utf-8", "replace") if raw is not None else None
    return None


def _short(exc: BaseException) -> str:
    return str(exc).replace("\n", " ")[:160]
