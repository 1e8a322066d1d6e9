"""Envelope, schema and naming rules of the bus (no servers)."""
from __future__ import annotations

import json

import pytest

from services.core import schemas
from services.core.bus.failures import DLQ_DETAIL_HEADERS, DLQ_HEADERS, STACK_MAX, Trail, dlq_headers, stack_text
from services.core.bus.policy import RetryPolicy
from services.core.bus.topics import resolve, retry_topic
from services.core.errors import ValidationError
from services.core.events import Event, decode, deterministic_id, encode, header_value

DATA = {"resourceType": "DocumentReference", "id": "d1", "versionId": "2", "patient": "p1", "action": "update",
        "origin": "subscription", "lastUpdated": "2024-05-01T10:00:00+02:00"}


def _event(**kw):
    return Event.new("vigil.ehr.resource-changed", source="/ingest/acme", tenant="acme", key="p1", data=DATA, **kw)


def test_round_trip_keeps_every_attribute():
    event = _event()
    record = encode(event)
    assert record.key == b"p1" and header_value(record.headers, "ce_tenant") == "acme"
    assert decode(record.key, record.value, record.headers) == event


def test_child_ids_are_deterministic_and_linked():
    parent = _event(id="fixed-id")
    a = parent.child("vigil.extraction.findings", {}, stage="extraction", index=1)
    b = parent.child("vigil.extraction.findings", {}, stage="extraction", index=1)
    c = parent.child("vigil.extraction.findings", {}, stage="extraction", index=2)
    assert a.id == b.id != c.id
    assert a.id == deterministic_id("fixed-id", "extraction", "vigil.extraction.findings", 1)  # stable across releases
    assert a.causationid == "fixed-id" and a.correlationid == "fixed-id" and a.traceparent == parent.traceparent


@pytest.mark.parametrize("headers,value,code", [
    ([], b"{}", "envelope"),
    (None, b"{}", "envelope"),
    ("ok", b"not json", "payload_json"),
    ("ok", b"[1]", "payload_json"),
])
def test_decode_rejects_malformed_records(headers, value, code):
    if headers == "ok":
        headers = encode(_event()).headers
    with pytest.raises(ValidationError) as info:
        decode(b"k", value, headers)
    assert info.value.code == code


def test_schema_errors_name_the_path_not_the_value():
    schemas.validate("vigil.ehr.resource-changed", DATA)
    with pytest.raises(ValidationError) as info:
        schemas.validate("vigil.ehr.resource-changed", dict(DATA, action="Jane Smith"))
    assert "action: enum" in str(info.value) and "Jane" not in str(info.value)
    with pytest.raises(ValidationError):
        schemas.validate("vigil.ehr.resource-changed", dict(DATA, lastUpdated="yesterday"))
    with pytest.raises(ValidationError) as unknown:
        schemas.validate("vigil.unknown", {})
    assert unknown.value.code == "unknown_type"


def test_every_schema_compiles():
    for event_type in schemas.SCHEMAS:
        schemas.validator(event_type)


def test_topics_are_fenced_to_the_tenant():
    assert resolve("acme", "findings") == "vigil.acme.findings"
    assert retry_topic("acme", "triage", 2) == "vigil.acme.triage.retry.2"
    with pytest.raises(PermissionError):
        resolve("acme", "vigil.other.findings")


def test_dlq_headers_are_complete_and_bounded():
    class Msg:
        topic, partition, offset, timestamp, headers = "vigil.acme.ehr-events", 1, 42, 1000, encode(_event()).headers

    trail = Trail.from_record(Msg, 0)
    trail.failed("RetryableError", "http_503", "abc", 2000, 3)
    headers = dlq_headers(Msg.headers, trail, "extraction", 2000, "RetryableError", "http_503", "abc", "x" * 50)
    names = [k for k, _ in headers]
    assert all(n in names for n in DLQ_HEADERS) and "ce_type" in names
    assert header_value(headers, "dlq-original-offset") == "42" and header_value(headers, "dlq-attempts") == "3"
    assert json.loads(header_value(headers, "dlq-history"))[-1]["code"] == "http_503"


def test_dlq_headers_carry_the_stack_bounded():
    class Msg:
        topic, partition, offset, timestamp, headers = "vigil.acme.ehr-events", 0, 7, 1000, encode(_event()).headers

    try:
        raise ValueError("z" * STACK_MAX + " inner failure")  # a trace longer than STACK_MAX
    except ValueError as exc:
        text = stack_text(exc)
    assert len(text) == STACK_MAX and text.startswith("[...]") and text.rstrip().endswith("inner failure")
    trail = Trail.from_record(Msg, 0)
    trail.failed("ValueError", "error", "abc", 2000, 1)
    headers = dlq_headers(Msg.headers, trail, "extraction", 2000, "ValueError", "error", "abc", "m", text)
    assert header_value(headers, "dlq-stack") == text
    assert all(n in [k for k, _ in headers] for n in DLQ_DETAIL_HEADERS)


def test_default_retry_schedule():
    policy = RetryPolicy()
    assert policy.levels == 3 and policy.quick_attempts == 3
    with pytest.raises(ValueError):
        RetryPolicy(quick_attempts=0)
