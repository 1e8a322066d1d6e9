"""The envelope's fast path gives exactly what the ``cloudevents`` binding gives (no servers)."""
from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from services.core import events as ev
from services.core.errors import ValidationError
from services.core.events import Event, decode, encode

DATA = {"resourceType": "DocumentReference", "id": "d1", "versionId": "2", "patient": "p1", "action": "update",
        "origin": "subscription", "lastUpdated": "2024-05-01T10:00:00+02:00", "note": "ünïcode"}

TIMES = [datetime(2024, 5, 1, 10, 0, tzinfo=timezone.utc),
         datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=timezone.utc),
         datetime(2024, 5, 1, 10, 0, 0, 5000, tzinfo=timezone(timedelta(hours=2))),
         datetime(2024, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-5, minutes=-30)))]


def _event(time: datetime, **kw) -> Event:
    base = Event.new("vigil.ehr.resource-changed", source="/ingest/acme", tenant="acme", key="p1", data=DATA)
    return Event(**{**base.__dict__, "time": time, **kw})


def _library_only(monkeypatch) -> None:
    monkeypatch.setattr(ev, "_fast_headers", lambda _event: None)
    monkeypatch.setattr(ev, "_fast_attributes", lambda _headers: None)


@pytest.mark.parametrize("time", TIMES)
@pytest.mark.parametrize("extra", [{}, {"subject": "DocumentReference/d1"}, {"correlationid": None, "traceparent": ""}])
def test_fast_path_writes_and_reads_what_the_library_does(time, extra, monkeypatch):
    event = _event(time, **extra)
    fast = ev._fast_headers(event)
    assert fast is not None and fast == ev._library_headers(event)
    assert ev._fast_attributes(fast) is not None
    fast_record = encode(event)
    fast_event = decode(*_record(event))
    assert fast_event == event
    _library_only(monkeypatch)
    assert encode(event) == fast_record
    assert decode(*_record(event)) == fast_event


def _record(event: Event):
    record = encode(event)
    return record.key, record.value, record.headers


def test_envelopes_the_fast_path_does_not_own_still_encode_through_the_library():
    with pytest.raises(ValidationError) as info:
        encode(_event(TIMES[0], subject=""))  # the library rejects an empty subject
    assert info.value.code == "envelope" and "subject" in str(info.value)
    with pytest.raises(ValidationError):
        encode(_event(datetime(2024, 5, 1, 10, 0)))  # naive time
    event = _event(TIMES[0], correlationid=42)  # not a string: library path, str() of the value
    assert ev._fast_headers(event) is None
    assert ("ce_correlationid", b"42") in encode(event).headers


def _headers(**changes) -> list[tuple[str, bytes | None]]:
    headers = dict(encode(_event(TIMES[1])).headers)
    for name, value in changes.items():
        name = name.replace("__", "-")
        if value is ...:
            headers.pop(name, None)
        else:
            headers[name] = value
    return list(headers.items())


# Accepted ones must decode as the library reads them (most through the library itself),
# rejected ones must fail with the library's message.
ACCEPTED = [
    _headers(ce_specversion=...),                                  # the library defaults 1.0
    _headers(ce_time=b"2024-05-01t10:00:00z"),                     # lowercase separators
    _headers(ce_time=b"2024-05-01T10:00:00.1234567Z"),             # 7 fraction digits
    _headers(ce_time=b"20240501T100000Z"),                         # basic format
    _headers(ce_time=b"2024-05-01T10:00:00+00:00"),
    _headers(ce_extra=b"x"),                                       # an extension we do not read
    _headers(ce_Bad=b"x"),                                         # the library lowercases names
    _headers(content__type=...),
]
REJECTED = [
    _headers(ce_specversion=b"2.0"),
    _headers(ce_source=b""),
    _headers(ce_source=...),
    _headers(ce_id=b""),
    _headers(ce_type=b""),
    _headers(ce_subject=b""),
    _headers(content__type=b""),
    _headers(ce_time=b"yesterday"),
    _headers(ce_time=b""),
    _headers(ce_time=b"2024-02-30T10:00:00Z"),
    _headers(ce_time=b"2024-05-01T10:00:00"),                      # no zone
    _headers(ce_id=b"\xff\xfe"),
    _headers(ce_data=b"x"),
    _headers(ce_traceparent=None),                                 # a header without a value
]


@pytest.mark.parametrize("headers", ACCEPTED)
def test_unusual_but_valid_envelopes_decode_like_the_library(headers, monkeypatch):
    value = encode(_event(TIMES[1])).value
    event = decode(b"p1", value, headers)
    _library_only(monkeypatch)
    assert decode(b"p1", value, headers) == event


@pytest.mark.parametrize("headers", REJECTED)
def test_malformed_envelopes_fail_with_the_library_message(headers, monkeypatch):
    with pytest.raises(ValidationError) as info:
        decode(b"p1", b"{}", headers)
    _library_only(monkeypatch)
    with pytest.raises(ValidationError) as reference:
        decode(b"p1", b"{}", headers)
    assert info.value.code == reference.value.code == "envelope" and str(info.value) == str(reference.value)


@pytest.mark.parametrize("parts", [("a", "extraction", "vigil.extraction.findings", 1), ("ünï", None, 2.5), ("",)])
def test_deterministic_id_is_uuid5(parts):
    expected = str(uuid.uuid5(ev._ID_NAMESPACE, "\x1f".join(str(p) for p in parts)))
    assert ev.deterministic_id(*parts) == expected


@pytest.mark.parametrize("event_id", [b"a\nb", b"\x00", b"tab\there", b"c1\xc2\x85"])
def test_an_event_id_with_a_control_character_is_refused(event_id):
    """CloudEvents strings must not hold control characters; ids end up in ledger keys and logs."""
    with pytest.raises(ValidationError) as info:
        decode(b"p1", b"{}", _headers(ce_id=event_id))
    assert info.value.code == "envelope" and "control character" in str(info.value)
    assert decode(b"p1", b"{}", _headers(ce_id="ünï-1 2".encode())).id == "ünï-1 2"


def test_event_times_are_written_as_isoformat_writes_them():
    rng = random.Random(11)
    zones = [timezone.utc, timezone(timedelta(0)), timezone(timedelta(hours=2)), timezone(timedelta(hours=-9, minutes=-30))]
    for i in range(3000):  # more seconds than the cache keeps, some repeated, some with zero microseconds
        when = datetime(2024, 1, 1, tzinfo=rng.choice(zones)) + timedelta(seconds=rng.randrange(200),
                                                                          microseconds=rng.choice([0, rng.randrange(10**6)]))
        expected = when.isoformat()
        expected = expected[:-6] + "Z" if expected.endswith("+00:00") else expected
        assert ev._rfc3339(when) == expected
