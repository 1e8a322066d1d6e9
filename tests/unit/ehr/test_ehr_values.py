"""Request values at the edge of their types: every reader refuses with a 400 FhirError (never a
ValueError, TypeError or OverflowError), and dates at the end of the calendar stay in range."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from services.ehr import search, validation, values
from services.ehr.outcome import FhirError

HUGE = "9" * 5000
SUPERSCRIPT_TWO = "\u00b2"
ARABIC_THREE = "\u0663"


def refused(call, *args, **kwargs) -> FhirError:
    with pytest.raises(FhirError) as caught:
        call(*args, **kwargs)
    assert caught.value.status == 400
    return caught.value


@pytest.mark.parametrize("raw", [SUPERSCRIPT_TWO, ARABIC_THREE, HUGE, "1" * 19, "-1", "", " 5", "5 ", "1e3", "0x10"])
def test_whole_numbers_are_ascii_digits_of_bounded_length(raw):
    refused(values.whole_number, "_count", raw, 0, 500)


def test_whole_numbers_clamp_or_refuse_out_of_range():
    assert values.whole_number("_count", "100000", 0, 500, clamp=True) == 500
    assert values.whole_number("_count", "007", 0, 500) == 7
    assert "between 1 and 5" in refused(values.whole_number, "n", "9", 1, 5).diagnostics
    refused(values.whole_number, "n", 9, 1, 5)  # not a string


def test_versions_and_etags():
    assert values.version("3") == 3
    for raw in (SUPERSCRIPT_TWO, HUGE, "0", str(2**31), "x", ""):
        assert values.version(raw) is None
    assert values.etag_version('W/"3"') == 3 and values.etag_version('"12"') == 12 and values.etag_version("4") == 4
    assert values.etag_version(None) is None and values.etag_version("") is None
    for raw in (3, ['W/"1"'], {"a": 1}, True, f'W/"{HUGE}"', f'W/"{SUPERSCRIPT_TWO}"', 'W/"0"', 'W/"x"'):
        refused(values.etag_version, raw, "request.ifMatch")


@pytest.mark.parametrize("raw", ["9999", "9999-12", "9999-12-31", "gt9999-12-31T23:59:59Z",
                                 "le9999-12-31T23:59:59-11:00", "ge0001-01-01T00:00:00+14:00", "0001", "0001-01-01"])
def test_dates_at_the_ends_of_the_calendar_stay_in_range(raw):
    _, low, high = values.date_range(raw)
    assert values.EARLIEST <= low <= high <= values.LATEST
    assert low.utcoffset().total_seconds() == 0 and high.utcoffset().total_seconds() == 0


def test_date_ranges_keep_their_precision():
    assert values.date_range("9999")[1:] == (datetime(9999, 1, 1, tzinfo=timezone.utc), values.LATEST)
    assert values.date_range("2024")[2] == datetime(2025, 1, 1, tzinfo=timezone.utc)
    assert values.date_range("2024-12")[2] == datetime(2025, 1, 1, tzinfo=timezone.utc)
    assert values.date_range("9999-12-31")[2] == values.LATEST
    assert values.later(values.LATEST, values.LATEST - values.EARLIEST) == values.LATEST


@pytest.mark.parametrize("raw", ["0000", "2024-13", "2024-02-30", "2024-01-01T25:00:00Z", "10000-01-01",
                                 f"{ARABIC_THREE * 4}", "2024-01-01T00:00:00+99:00", "tomorrow", HUGE])
def test_impossible_dates_are_refused(raw):
    refused(values.date_range, raw)


@pytest.mark.parametrize("params", [[("_count", SUPERSCRIPT_TWO)], [("_count", HUGE)], [("_offset", HUGE)],
                                    [("_offset", ARABIC_THREE)], [("authored-on", "9" * 40)]])
def test_search_parameters_refuse_numbers_int_cannot_read(params):
    refused(search.parse, "Task", params)


def test_search_parameters_accept_the_last_day():
    q = search.parse("Task", [("authored-on", "9999-12-31"), ("_lastUpdated", "gt9999-12-31T23:59:59Z")])
    assert values.LATEST in q.args


@pytest.mark.parametrize("body", [b'{"n": ' + HUGE.encode() + b"}", b'{"n": ' + HUGE.encode() + b".5}",
                                  b'{"n": NaN}', b'{"n": Infinity}', b'{"n": -Infinity}', b'{"n": 1e999}',
                                  b'{"n": -1e400}', b'{"n": 1' + b"0" * 40 + b"}"])
def test_json_numbers_must_fit(body):
    assert refused(validation.parse_json, body).code == "structure"


def test_json_numbers_that_fit_are_kept():
    assert validation.parse_json(b'{"a": 9223372036854775807, "b": 0.000123456789012345678, "c": -1.5e300}') == {
        "a": 9223372036854775807, "b": 0.000123456789012345678, "c": -1.5e300}
