"""Units a reader takes in at a glance: durations in the unit that fits them, periods as dates.

``duration(0.42)`` -> ``"0.42 s"``, ``duration(42)`` -> ``"42 s"``, ``duration(150)`` -> ``"2.5 min"``,
``duration(7200)`` -> ``"2.0 h"``, ``duration(200000)`` -> ``"2.3 d"``: never "0 min" for an alert that
took half a second. ``duration_unit(values)`` picks one unit for a whole series (a chart's axis), by
its largest value.
"""
from __future__ import annotations

from datetime import datetime
from typing import Iterable

#: (unit, seconds per unit, upper bound in seconds for choosing it)
UNITS = (("s", 1.0, 120.0), ("min", 60.0, 2 * 3600.0), ("h", 3600.0, 2 * 86400.0), ("d", 86400.0, float("inf")))


def duration_unit(values: Iterable[float]) -> tuple[str, float]:
    """(unit, seconds per unit) for a series: the largest value reads as < 120 of that unit."""
    top = max((abs(v) for v in values), default=0.0)
    for unit, size, below in UNITS:
        if top < below:
            return unit, size
    return UNITS[-1][0], UNITS[-1][1]


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    unit, size = duration_unit([seconds])
    value = seconds / size
    if unit == "s":
        return f"{value:.2f} s" if value < 10 else f"{value:.0f} s"
    return f"{value:.1f} {unit}"


def period(since: datetime, until: datetime) -> str:
    """``2026-01-05 08:00 to 2026-01-17 09:00 UTC`` (dates only when both bounds are midnight)."""
    if since.time() == until.time() == datetime.min.time():
        return f"{since:%Y-%m-%d} to {until:%Y-%m-%d} UTC"
    return f"{since:%Y-%m-%d %H:%M} to {until:%Y-%m-%d %H:%M} UTC"


def percent(value: float | None) -> str:
    """``12%`` (whole when one decimal would show .0), else ``10.4%``: close to a gate, the decimal counts."""
    if value is None:
        return "-"
    tenth = round(value * 100, 1)
    return f"{tenth:.0f}%" if tenth == int(tenth) else f"{tenth:.1f}%"
