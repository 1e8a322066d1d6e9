"""Dates and times in patients' words -> a search window and preferences, relative to "now" in
the clinic's time zone. Deterministic and offline.

    "next Tuesday afternoon", "tomorrow at 3", "the 14th", "any morning next week",
    "March 14", "14/3" (ambiguous with 3/14 only when both readings are valid), "Friday 10am"

``parse(text, now)`` returns a ``When`` (or None when the text names no date or time). An
ambiguous text (two readings, or a weekday that contradicts the date) has ``ambiguous`` set
and the caller asks the patient to clarify instead of guessing.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_WD = {name: i for i, name in enumerate(WEEKDAYS)} | {n[:3]: i for i, n in enumerate(WEEKDAYS)} | {"tues": 1, "thur": 3,
                                                                                                  "thurs": 3}
MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
          "november", "december")
_MON = {name: i + 1 for i, name in enumerate(MONTHS)} | {n[:3]: i + 1 for i, n in enumerate(MONTHS)} | {"sept": 9}
PARTS = ("morning", "afternoon", "evening")
#: A bare hour "at 3" means the afternoon for hours 1..7 (clinic hours), the morning for 8..11.
PM_IF_BARE_HOUR_BELOW = 8
#: How far ahead an open-ended request ("any morning") looks.
DEFAULT_HORIZON = timedelta(days=14)

_WD_RE = "|".join(sorted(_WD, key=len, reverse=True))
_MON_RE = "|".join(sorted(_MON, key=len, reverse=True))
_TIME = re.compile(r"\b(?:at\s+|@\s*)?(\d{1,2})(?::(\d{2}))?\s*(am|pm|a\.m\.|p\.m\.)?(?=\W|$)")
_AT_HOUR = re.compile(r"\b(?:at|@|around|by)\s+(\d{1,2})(?::(\d{2}))?\s*(am|pm|a\.m\.|p\.m\.)?\b")
_CLOCK = re.compile(r"\b(\d{1,2})(?::(\d{2}))\s*(am|pm)?\b|\b(\d{1,2})\s*(am|pm|a\.m\.|p\.m\.)(?=\W|$)")
_NOON = re.compile(r"\b(noon|midday)\b")
_ORDINAL_DAY = re.compile(r"\b(?:the\s+)?(\d{1,2})(?:st|nd|rd|th)\b")
_MONTH_DAY = re.compile(rf"\b({_MON_RE})\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?\b|\b(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?({_MON_RE})\b")
_NUMERIC = re.compile(r"\b(\d{1,2})[/.](\d{1,2})(?:[/.](\d{2,4}))?\b")
_WEEKDAY = re.compile(rf"\b(next|this|coming)?\s*({_WD_RE})\b")


@dataclass
class When:
    start: datetime                       # window [start, end) in the clinic's zone
    end: datetime
    weekdays: set[int] = field(default_factory=set)
    part: str = ""                        # morning | afternoon | evening
    at: time | None = None                # a specific time of day
    day: date | None = None               # a specific date
    ambiguous: str = ""                   # why the text cannot be read one way


def _day_start(d: date, now: datetime) -> datetime:
    return datetime.combine(d, time(0), tzinfo=now.tzinfo)


def _hour(h: int, minute: int, suffix: str | None, bare_means_pm: bool = True) -> time | None:
    suffix = (suffix or "").replace(".", "")
    if suffix == "pm" and h < 12:
        h += 12
    elif suffix == "am" and h == 12:
        h = 0
    elif not suffix and bare_means_pm and 1 <= h < PM_IF_BARE_HOUR_BELOW:
        h += 12
    if not (0 <= h <= 23 and 0 <= minute <= 59):
        return None
    return time(h, minute)


def _find_time(text: str) -> time | None:
    if _NOON.search(text):
        return time(12, 0)
    m = _CLOCK.search(text)
    if m:
        if m.group(1):
            return _hour(int(m.group(1)), int(m.group(2)), m.group(3))
        return _hour(int(m.group(4)), 0, m.group(5))
    m = _AT_HOUR.search(text)
    if m:
        return _hour(int(m.group(1)), int(m.group(2) or 0), m.group(3))
    return None


def _next_date(month: int, day: int, today: date) -> date | None:
    for year in (today.year, today.year + 1):
        try:
            candidate = date(year, month, day)
        except ValueError:
            continue
        if candidate >= today:
            return candidate
    return None


def _ordinal_date(day: int, today: date) -> date | None:
    """The next date (today or later) whose day of month is ``day``."""
    year, month = today.year, today.month
    for _ in range(13):
        try:
            candidate = date(year, month, day)
            if candidate >= today:
                return candidate
        except ValueError:
            pass
        month += 1
        if month > 12:
            year, month = year + 1, 1
    return None


def parse(text: str, now: datetime) -> When | None:
    t = " " + text.lower().replace("’", "'") + " "
    today = now.date()
    week_start = today - timedelta(days=today.weekday())
    start, end = now, now + DEFAULT_HORIZON
    found = False
    when = When(start, end)
    # -- parts of the day, explicit time
    for part in PARTS:
        if re.search(rf"\b{part}s?\b", t):
            when.part, found = part, True
    when.at = _find_time(_MONTH_DAY.sub(" ", _NUMERIC.sub(" ", _ORDINAL_DAY.sub(" ", t))))
    found = found or when.at is not None
    # -- a specific date
    day: date | None = None
    m = _MONTH_DAY.search(t)
    numeric = _NUMERIC.search(t)
    ordinal = _ORDINAL_DAY.search(t)
    if m:
        month = _MON[m.group(1) or m.group(4)]
        number = int(m.group(2) or m.group(3))
        day = _next_date(month, number, today)
        if day is None:
            when.ambiguous = "no such date"
    elif numeric:
        a, b = int(numeric.group(1)), int(numeric.group(2))
        readings = {d for d in (_next_date(b, a, today), _next_date(a, b, today)) if d is not None}
        if len(readings) > 1:
            when.ambiguous = "day and month could be read either way"
        elif readings:
            day = readings.pop()
        else:
            when.ambiguous = "no such date"
    elif ordinal:
        day = _ordinal_date(int(ordinal.group(1)), today)
        if day is None:
            when.ambiguous = "no such date"
    elif re.search(r"\bday after tomorrow\b", t):
        day = today + timedelta(days=2)
    elif re.search(r"\btomorrow\b", t):
        day = today + timedelta(days=1)
    elif re.search(r"\btoday\b", t):
        day = today
    # -- weekdays
    weekday_hits = list(_WEEKDAY.finditer(t))
    if weekday_hits:
        found = True
        wanted = {_WD[h.group(2)] for h in weekday_hits}
        if day is not None:
            if day.weekday() not in wanted:
                when.ambiguous = f"{day.isoformat()} is a {WEEKDAYS[day.weekday()].capitalize()}"
        elif len(wanted) == 1 and not re.search(r"\b(any|every|on)\s+\w+days\b|\b\w+days\b", t):
            (wd,) = wanted
            ahead = (wd - today.weekday()) % 7 or 7          # "Tuesday" / "next Tuesday": the coming one
            day = today + timedelta(days=ahead)
        else:
            when.weekdays = wanted
    # -- weeks
    if re.search(r"\bnext week\b", t):
        found = True
        ws = week_start + timedelta(days=7)
        if day is None:
            start, end = _day_start(ws, now), _day_start(ws + timedelta(days=7), now)
        elif weekday_hits and len(weekday_hits) == 1:
            day = ws + timedelta(days=_WD[weekday_hits[0].group(2)])
    elif re.search(r"\bthis week\b", t) and day is None:
        found = True
        start, end = now, _day_start(week_start + timedelta(days=7), now)
    if day is not None:
        found = True
        when.day = day
        start, end = max(now, _day_start(day, now)), _day_start(day + timedelta(days=1), now)
    if when.ambiguous:
        found = True
    if not found:
        return None
    when.start, when.end = start, end
    return when


def matches(when: When, moment: datetime) -> bool:
    """Whether a slot start (in the clinic's zone) fits the preference."""
    if not when.start <= moment < when.end:
        return False
    if when.weekdays and moment.weekday() not in when.weekdays:
        return False
    if when.part:
        low, high = {"morning": (0, 12), "afternoon": (12, 17), "evening": (17, 24)}[when.part]
        if not low <= moment.hour < high:
            return False
    if when.at and (moment.hour, moment.minute) != (when.at.hour, when.at.minute):
        return False
    return True


def same_instant(a: str, b: str) -> bool:
    """Two FHIR instants name the same moment (offsets may differ); anything unparseable is not."""
    try:
        first, second = (datetime.fromisoformat(v.replace("Z", "+00:00")) for v in (a, b))
    except (ValueError, AttributeError):
        return False
    if first.tzinfo is None or second.tzinfo is None:
        return False
    return first == second

