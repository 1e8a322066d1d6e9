"""Typed values read from requests: whole numbers, ETag versions and FHIR date search ranges.

Each reader checks type, size and range before converting, and refuses with a 400 OperationOutcome
(``outcome.bad_request``) what it cannot represent: only ASCII digits count as digits (``"²"`` is a
digit to ``str.isdigit`` but not to ``int``), numbers are bounded in length before ``int`` sees them,
and date arithmetic stays inside the calendar Python can hold (year 1 to 9999, in UTC), so a range
that ends past 9999-12-31 ends at its last instant instead of overflowing.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from services.ehr.outcome import bad_request

#: 18 digits always fit a PostgreSQL bigint; nothing the server counts needs more.
MAX_DIGITS = 18
#: Resource versions are PostgreSQL integers.
MAX_VERSION = 2**31 - 1
EARLIEST = datetime.min.replace(tzinfo=timezone.utc)
LATEST = datetime.max.replace(tzinfo=timezone.utc)

_DIGITS = re.compile(r"[0-9]{1,%d}" % MAX_DIGITS)
_ETAG = re.compile(r'\s*(?:W/)?"?([0-9]{1,10})"?\s*')
DATE_SEARCH_VALUE = re.compile(r"^(eq|ne|gt|lt|ge|le|sa|eb)?(\d{4}(-\d{2}(-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?"
                         r"(Z|[+-]\d{2}:\d{2})?)?)?)?)$", re.ASCII)


def whole_number(name: str, raw: object, low: int, high: int, *, clamp: bool = False) -> int:
    """A non-negative whole number written in ASCII digits. Out of [low, high] it is clamped into the
    range (``clamp``, as for ``_count``) or refused."""
    if not isinstance(raw, str) or not _DIGITS.fullmatch(raw):
        raise bad_request(f"{name} must be a whole number (at most {MAX_DIGITS} digits 0-9)")
    value = int(raw)
    if clamp:
        return max(low, min(high, value))
    if not low <= value <= high:
        raise bad_request(f"{name} must be between {low} and {high}")
    return value


def version(raw: str) -> int | None:
    """A ``_history/<version>`` path segment: the version, or None if it cannot name one."""
    if not _DIGITS.fullmatch(raw) or not 1 <= int(raw) <= MAX_VERSION:
        return None
    return int(raw)


def etag_version(value: object, name: str = "If-Match") -> int | None:
    """``W/"3"`` (or ``"3"``, ``3``) -> 3; None when absent or empty."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise bad_request(f"{name} must be a string holding an ETag like W/\"3\"")
    m = _ETAG.fullmatch(value)
    if not m or not 1 <= int(m.group(1)) <= MAX_VERSION:
        raise bad_request(f"{name} '{value[:40]}' is not an ETag like W/\"3\"")
    return int(m.group(1))


def later(moment: datetime, delta: timedelta) -> datetime:
    """``moment + delta``, or the last representable instant when that is past the end of year 9999."""
    try:
        return moment + delta
    except OverflowError:
        return LATEST


def _utc(moment: datetime) -> datetime:
    """In UTC; an offset that pushes the instant past either end of the calendar clamps to that end."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    try:
        return moment.astimezone(timezone.utc)
    except OverflowError:
        return LATEST if moment.year > 1 else EARLIEST


def date_range(raw: str) -> tuple[str, datetime, datetime]:
    """A date search value (``ge2024-01-31``, ``2024``, ``lt2024-05-01T10:00:00+02:00``) ->
    (prefix, start, end): the instants [start, end) the value's precision covers, in UTC."""
    m = DATE_SEARCH_VALUE.match(raw)
    if not m:
        raise bad_request(f"'{raw[:40]}' is not a FHIR date search value (e.g. ge2024-01-31)")
    prefix, value = m.group(1) or "eq", m.group(2)
    try:
        if len(value) == 4:
            low = datetime(int(value), 1, 1, tzinfo=timezone.utc)
            high = LATEST if low.year == 9999 else low.replace(year=low.year + 1)
        elif len(value) == 7:
            low = datetime(int(value[:4]), int(value[5:7]), 1, tzinfo=timezone.utc)
            high = LATEST if (low.year, low.month) == (9999, 12) else (low + timedelta(days=32)).replace(day=1)
        elif len(value) == 10:
            low = datetime.fromisoformat(value).replace(tzinfo=timezone.utc)
            high = later(low, timedelta(days=1))
        else:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            low, high = _utc(moment), _utc(later(moment, timedelta(seconds=1)))
    except ValueError:
        raise bad_request(f"'{raw[:40]}' is not a valid date") from None
    return prefix, low, high
