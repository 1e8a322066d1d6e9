"""The report's PNG plots, drawn with matplotlib's Agg backend (no display, no pyplot state).

Each function takes ``ReportData`` and a path and writes one PNG (DPI ``DPI``). An empty series
still yields a figure that says so, so the page never shows a broken image.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402  (after the backend is chosen)

from services.monitor.report.data import ReportData  # noqa: E402
from services.monitor.stats import percentile  # noqa: E402

DPI = 110
SIZE = (8.0, 3.6)
COLORS = ("#1f5fa8", "#d9822b", "#3a9d5d", "#b33c3c", "#7a5aa6", "#6b6b6b")


def _figure(title: str):
    fig = Figure(figsize=SIZE, dpi=DPI)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_title(title, fontsize=11, loc="left")
    ax.grid(True, alpha=0.3)
    return fig, ax


def _empty(ax, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what} yet", ha="center", va="center", transform=ax.transAxes, color="#777777")


def _save(fig, path: Path) -> Path:
    fig.autofmt_xdate() if fig.axes and fig.axes[0].has_data() else None
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def alerts_per_day(data: ReportData, path: Path) -> Path:
    fig, ax = _figure("Inbox Tasks (alerts) created per day")
    if not data.tasks_per_day:
        _empty(ax, "Tasks")
    bottom = [0] * len(data.days)
    for i, (kind, per_day) in enumerate(sorted(data.tasks_per_day.items())):
        values = [per_day.get(d, 0) for d in data.days]
        ax.bar(data.days, values, bottom=bottom, label=kind, color=COLORS[i % len(COLORS)], width=0.8)
        bottom = [b + v for b, v in zip(bottom, values)]
    for alert in data.alerts:
        ax.axvline(alert["time"].date() if alert.get("period_end") is None else alert["period_end"].date(),
                   color="#b33c3c", alpha=0.25, linewidth=1)
    if data.tasks_per_day:
        ax.legend(fontsize=8, loc="upper left")
    ax.set_ylabel("Tasks")
    return _save(fig, path)


def override_rate(data: ReportData, path: Path, threshold: float) -> Path:
    fig, ax = _figure("Override rate (overridden / clinician actions)")
    daily = [(d, v) for d, v in data.override_daily.items() if v is not None]
    trailing = [(d, v) for d, v in data.override_trailing.items() if v is not None]
    if not daily and not trailing:
        _empty(ax, "clinician actions")
    if daily:
        ax.plot(*zip(*daily), marker="o", linestyle="none", color=COLORS[0], alpha=0.6, label="per day")
    if trailing:
        ax.plot(*zip(*trailing), color=COLORS[1], linewidth=2, label="trailing window")
    ax.axhline(threshold, color="#b33c3c", linestyle="--", linewidth=1, label=f"alert > {threshold:.0%}")
    ax.set_ylim(0, 1)
    ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    ax.legend(fontsize=8, loc="upper left")
    return _save(fig, path)


def time_to_alert(data: ReportData, path: Path) -> Path:
    fig, ax = _figure("Time to alert: note time -> Task created (minutes)")
    values = data.tta_minutes
    if not values:
        _empty(ax, "Tasks with a note time")
    else:
        ax.hist(values, bins=min(30, max(5, len(values) // 2)), color=COLORS[0], alpha=0.8)
        for p, style in ((50, "-"), (95, "--")):
            q = percentile(values, p)
            ax.axvline(q, color="#b33c3c", linestyle=style, linewidth=1.5, label=f"p{p} = {q:.1f} min")
        ax.legend(fontsize=8)
        ax.set_ylabel("Tasks")
    return _save(fig, path)


def drift(data: ReportData, path: Path, threshold: float) -> Path:
    fig, ax = _figure("Drift: population stability index vs the baseline period")
    drawn = False
    for i, (dimension, series) in enumerate(sorted(data.psi_daily.items())):
        if series:
            ax.plot(list(series), list(series.values()), marker=".", color=COLORS[i % len(COLORS)], label=dimension)
            drawn = True
    if not drawn:
        _empty(ax, "drift periods with enough data")
    ax.axhline(threshold, color="#b33c3c", linestyle="--", linewidth=1, label=f"alert > {threshold}")
    ax.set_ylabel("PSI")
    ax.legend(fontsize=8, loc="upper left")
    return _save(fig, path)


def cost(data: ReportData, path: Path) -> Path:
    fig, ax = _figure("LLM cost per day (USD) and per 1,000 notes")
    if not data.cost_per_day:
        _empty(ax, "LLM spend")
    else:
        days = sorted(data.cost_per_day)
        ax.bar(days, [data.cost_per_day[d] for d in days], color=COLORS[0], alpha=0.8, label="per day")
        ax.set_ylabel("USD per day")
        per_1000 = data.cost_per_1000_notes
        if per_1000:
            twin = ax.twinx()
            ds = sorted(per_1000)
            twin.plot(ds, [per_1000[d] for d in ds], color=COLORS[1], marker="o", label="per 1,000 notes")
            twin.set_ylabel("USD per 1,000 notes")
            twin.legend(fontsize=8, loc="upper right")
        ax.legend(fontsize=8, loc="upper left")
    return _save(fig, path)
