"""Patients' dates and times relative to Monday 4 March 2030 09:00 UTC."""
from __future__ import annotations

from datetime import date, datetime, time, timezone
from zoneinfo import ZoneInfo

import pytest

from services.scheduling import dates

NOW = datetime(2030, 3, 4, 9, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("text, day, part, at", [
    ("next Tuesday afternoon", date(2030, 3, 5), "afternoon", None),
    ("tomorrow at 3", date(2030, 3, 5), "", time(15, 0)),
    ("the 14th", date(2030, 3, 14), "", None),
    ("the 2nd", date(2030, 4, 2), "", None),               # already past this month: next month
    ("March 14 at 10am", date(2030, 3, 14), "", time(10, 0)),
    ("14 March", date(2030, 3, 14), "", None),
    ("Friday 10am", date(2030, 3, 8), "", time(10, 0)),
    ("monday", date(2030, 3, 11), "", None),                # today is Monday: the next one
    ("day after tomorrow in the morning", date(2030, 3, 6), "morning", None),
    ("at noon on Thursday", date(2030, 3, 7), "", time(12, 0)),
    ("Thursday at 2:30pm", date(2030, 3, 7), "", time(14, 30)),
    ("next week on Wednesday", date(2030, 3, 13), "", None),
    ("14/3", date(2030, 3, 14), "", None),                  # 3/14 as month/day is the only valid reading
    ("January 3", date(2031, 1, 3), "", None),
])
def test_specific_days(text, day, part, at):
    when = dates.parse(text, NOW)
    assert (when.day, when.part, when.at, when.ambiguous) == (day, part, at, "")


def test_any_morning_next_week_is_a_week_window():
    when = dates.parse("any morning next week", NOW)
    assert when.day is None and when.part == "morning"
    assert (when.start, when.end) == (datetime(2030, 3, 11, tzinfo=timezone.utc), datetime(2030, 3, 18, tzinfo=timezone.utc))


def test_several_weekdays_are_a_set():
    when = dates.parse("Wednesday or Thursday afternoons", NOW)
    assert when.weekdays == {2, 3} and when.part == "afternoon" and when.day is None


@pytest.mark.parametrize("text, why", [
    ("3/4", "either way"),
    ("Tuesday the 15th", "is a Friday"),
    ("February 30", "no such date"),
])
def test_ambiguous_or_impossible(text, why):
    assert why in dates.parse(text, NOW).ambiguous


@pytest.mark.parametrize("text", ["yes", "2", "hello", "where do I park?", "cancel please", ""])
def test_no_date(text):
    assert dates.parse(text, NOW) is None


def test_clinic_time_zone_moves_the_day():
    late = datetime(2030, 3, 4, 23, 30, tzinfo=timezone.utc).astimezone(ZoneInfo("Asia/Tokyo"))   # Tue 08:30 in Tokyo
    assert dates.parse("tomorrow", late).day == date(2030, 3, 6)


def test_matches_checks_window_part_and_time():
    when = dates.parse("tomorrow afternoon", NOW)
    assert dates.matches(when, datetime(2030, 3, 5, 14, 0, tzinfo=timezone.utc))
    assert not dates.matches(when, datetime(2030, 3, 5, 10, 0, tzinfo=timezone.utc))
    assert not dates.matches(when, datetime(2030, 3, 6, 14, 0, tzinfo=timezone.utc))
    exact = dates.parse("tomorrow at 3", NOW)
    assert dates.matches(exact, datetime(2030, 3, 5, 15, 0, tzinfo=timezone.utc))
    assert not dates.matches(exact, datetime(2030, 3, 5, 14, 0, tzinfo=timezone.utc))
