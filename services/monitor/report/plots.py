"""The report's PNG charts, drawn with matplotlib's Agg backend (no display, no pyplot state).

Each function takes ``ReportData`` and a path and writes one PNG (DPI ``DPI``). An empty series
still yields a figure that says so, so the page never shows a broken image.

Axes follow the data: a time axis spans the data's first to last bucket (half a bucket of margin,
so one day of data is one day wide, never the years matplotlib pads a single date with); data
spanning under two days is drawn per hour; durations use the unit that fits their largest
value (``units.duration_unit``); rates are scaled to their largest value or threshold. The gate
thresholds are drawn on the charts they judge, and named when they lie off the data's scale.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates  # noqa: E402  (after the backend is chosen)
import matplotlib.ticker as mticker  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from services.monitor import units  # noqa: E402
from services.monitor.report.data import ReportData  # noqa: E402
from services.monitor.stats import percentile, rate  # noqa: E402

DPI = 110
SIZE = (8.0, 3.6)
COLORS = ("#1f5fa8", "#d9822b", "#3a9d5d", "#b33c3c", "#7a5aa6", "#6b6b6b")
GATE = "#b33c3c"


def _figure(title: str):
    fig = Figure(figsize=SIZE, dpi=DPI)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_title(title, fontsize=11, loc="left")
    ax.grid(True, alpha=0.3)
    return fig, ax


def _empty(ax, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what} in this period", ha="center", va="center", transform=ax.transAxes,
            color="#777777")
    ax.set_xticks([])
    ax.set_yticks([])


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def _as_datetime(x) -> datetime:
    return x if isinstance(x, datetime) else datetime(x.year, x.month, x.day)


def time_axis(ax, xs, step: timedelta) -> tuple[datetime, datetime]:
    """Limit the x axis to the data (``step`` = one bucket) with readable date ticks; returns the limits."""
    xs = [_as_datetime(x).replace(tzinfo=None) for x in xs]
    lo, hi = min(xs) - step * 0.6, max(xs) + step * 0.6
    ax.set_xlim(lo, hi)
    locator = mdates.AutoDateLocator(minticks=2, maxticks=8)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    return lo, hi


def _naive(xs):
    return [_as_datetime(x).replace(tzinfo=None) for x in xs]


def _bucket(data: ReportData) -> tuple[timedelta, str]:
    return (timedelta(hours=1), "hour") if data.hourly else (timedelta(days=1), "day")


def alerts_per_bucket(data: ReportData, path: Path) -> Path:
    step, name = _bucket(data)
    fig, ax = _figure(f"Inbox Tasks (alerts) written per {name}")
    if not data.tasks_per_bucket:
        _empty(ax, "Tasks")
        return _save(fig, path)
    xs = list(data.tasks_per_bucket)
    kinds = sorted({k for per in data.tasks_per_bucket.values() for k in per})
    bottom = [0] * len(xs)
    for i, kind in enumerate(kinds):
        values = [data.tasks_per_bucket[x].get(kind, 0) for x in xs]
        ax.bar(_naive(xs), values, bottom=bottom, label=kind, color=COLORS[i % len(COLORS)], width=step * 0.8)
        bottom = [b + v for b, v in zip(bottom, values)]
    ax.set_ylim(0, max(bottom) * 1.2)
    ax.yaxis.set_major_locator(mticker.MaxNLocator(integer=True))
    time_axis(ax, xs, step)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_ylabel("Tasks")
    return _save(fig, path)


def alerts_per_week(data: ReportData, path: Path) -> Path:
    fig, ax = _figure("Inbox Tasks written per ISO week (bar at the week's Monday)")
    if not data.tasks_per_week:
        _empty(ax, "Tasks")
        return _save(fig, path)
    xs = list(data.tasks_per_week)
    values = list(data.tasks_per_week.values())
    ax.bar(_naive(xs), values, width=timedelta(days=5), color=COLORS[0], align="edge")
    ax.set_ylim(0, max(values) * 1.2)
    ax.yaxis.set_major_locator(mticker.MaxNLocator(integer=True))
    lo = _as_datetime(min(xs)) - timedelta(days=1)
    ax.set_xlim(lo, _as_datetime(max(xs)) + timedelta(days=7))
    ax.xaxis.set_major_locator(mdates.WeekdayLocator(byweekday=mdates.MO))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%d %b\nweek %V"))
    ax.set_ylabel("Tasks")
    return _save(fig, path)


def _rate_axis(ax, values: list[float], gate: float, alert: float) -> None:
    top = min(1.0, max(values + [gate, alert]) * 1.3)
    ax.set_ylim(0, top)
    ax.yaxis.set_major_formatter(mticker.PercentFormatter(1.0))
    ax.axhline(gate, color=GATE, linestyle="--", linewidth=1.2, label=f"gate: at most {units.percent(gate)}")
    if alert != gate:
        ax.axhline(alert, color=COLORS[1], linestyle=":", linewidth=1, label=f"alert above {units.percent(alert)}")


def override_rate(data: ReportData, path: Path, gate: float, alert: float) -> Path:
    step, name = _bucket(data)
    fig, ax = _figure(f"Override rate per {name} (overridden / clinician actions)")
    points = [(x, rate(o, n), n) for x, (o, n) in data.actions_per_bucket.items()]
    if not points:
        _empty(ax, "clinician actions")
        return _save(fig, path)
    xs, values, ns = zip(*points)
    ax.plot(_naive(xs), values, marker="o", color=COLORS[0], label=f"per {name}")
    for x, v, n in points:
        ax.annotate(f"n={n}", (_naive([x])[0], v), textcoords="offset points", xytext=(0, 6), ha="center",
                    fontsize=7, color="#555555")
    _rate_axis(ax, list(values), gate, alert)
    time_axis(ax, xs, step)
    ax.legend(fontsize=8, loc="upper left")
    return _save(fig, path)


def override_rate_weekly(data: ReportData, path: Path, gate: float, alert: float) -> Path:
    fig, ax = _figure("Override rate per ISO week")
    points = [(x, rate(o, n), n) for x, (o, n) in data.actions_per_week.items()]
    if not points:
        _empty(ax, "clinician actions")
        return _save(fig, path)
    xs, values, ns = zip(*points)
    ax.bar(_naive(xs), values, width=timedelta(days=5), align="edge", color=COLORS[0], alpha=0.8, label="per week")
    for x, v, n in points:
        ax.annotate(f"n={n}", (_as_datetime(x) + timedelta(days=2.5), v), textcoords="offset points",
                    xytext=(0, 4), ha="center", fontsize=7, color="#555555")
    _rate_axis(ax, list(values), gate, alert)
    ax.set_xlim(_as_datetime(min(xs)) - timedelta(days=1), _as_datetime(max(xs)) + timedelta(days=7))
    ax.xaxis.set_major_locator(mdates.WeekdayLocator(byweekday=mdates.MO))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%d %b\nweek %V"))
    ax.legend(fontsize=8, loc="upper left")
    return _save(fig, path)


def time_to_alert(data: ReportData, path: Path, gate_s: float) -> Path:
    values = data.tta_seconds
    unit, size = units.duration_unit(values or [0])
    fig, ax = _figure(f"Time to alert: note -> inbox Task ({unit})")
    if not values:
        _empty(ax, "Tasks with a note time")
        return _save(fig, path)
    scaled = [v / size for v in values]
    ax.hist(scaled, bins=min(30, max(5, len(values) // 2)), color=COLORS[0], alpha=0.8)
    for p, style in ((50, "-"), (95, "--")):
        q = percentile(values, p)
        ax.axvline(q / size, color="#333333", linestyle=style, linewidth=1.3, label=f"p{p} = {units.duration(q)}")
    lo, hi = 0.0, max(scaled) * 1.15 or 1.0
    if gate_s / size <= hi * 1.5:
        ax.axvline(gate_s / size, color=GATE, linestyle="--", linewidth=1.5,
                   label=f"gate: p95 at most {units.duration(gate_s)}")
        hi = max(hi, gate_s / size * 1.05)
    else:  # named in the title rather than squeezing the data into a corner of a 24 h axis
        ax.set_title(f"Time to alert: note -> inbox Task ({unit}); gate p95 at most {units.duration(gate_s)}, "
                     "off this scale", fontsize=11, loc="left")
    ax.set_xlim(lo, hi)
    ax.set_xlabel(unit)
    ax.set_ylabel("Tasks")
    ax.yaxis.set_major_locator(mticker.MaxNLocator(integer=True))
    ax.legend(fontsize=8, loc="center right")
    return _save(fig, path)


def drift(data: ReportData, path: Path, threshold: float) -> Path:
    fig, ax = _figure("Drift: population stability index vs the baseline period")
    series = {d: s for d, s in data.psi_daily.items() if s}
    if not series:
        _empty(ax, "drift periods with enough data")
        return _save(fig, path)
    xs: list[date] = []
    top = threshold
    for i, (dimension, s) in enumerate(sorted(series.items())):
        ax.plot(_naive(s), list(s.values()), marker=".", color=COLORS[i % len(COLORS)], label=dimension)
        xs += list(s)
        top = max(top, *s.values())
    ax.axhline(threshold, color=GATE, linestyle="--", linewidth=1, label=f"alert above {threshold}")
    ax.set_ylim(0, top * 1.2)
    time_axis(ax, xs, timedelta(days=1))
    ax.set_ylabel("PSI")
    ax.legend(fontsize=8, loc="upper left")
    return _save(fig, path)


def cost(data: ReportData, path: Path) -> Path:
    fig, ax = _figure("LLM cost per day (USD) and per 1,000 notes")
    if not data.cost_per_day:
        _empty(ax, "LLM spend")
        return _save(fig, path)
    days = sorted(data.cost_per_day)
    ax.bar(_naive(days), [data.cost_per_day[d] for d in days], color=COLORS[0], alpha=0.8, label="per day",
           width=timedelta(days=0.8))
    ax.set_ylabel("USD per day")
    per_1000 = data.cost_per_1000_notes
    if per_1000:
        twin = ax.twinx()
        ds = sorted(per_1000)
        twin.plot(_naive(ds), [per_1000[d] for d in ds], color=COLORS[1], marker="o", label="per 1,000 notes")
        twin.set_ylabel("USD per 1,000 notes")
        twin.set_ylim(0, max(per_1000.values()) * 1.2)
        twin.legend(fontsize=8, loc="upper right")
    time_axis(ax, days, timedelta(days=1))
    ax.legend(fontsize=8, loc="upper left")
    return _save(fig, path)
