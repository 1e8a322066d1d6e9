"""The report's numbers, from the monitor tables and the inference cost ledger (no PHI)."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta

from services.monitor.config import MonitorSettings
from services.monitor.drift import NONE_BIN
from services.monitor.stats import percentile, psi, rate
from services.monitor.store import MonitorStore


@dataclass
class ReportData:
    tenant: str
    days: list[date] = field(default_factory=list)
    tasks_per_day: dict[str, dict[date, int]] = field(default_factory=dict)     # kind -> day -> n
    override_daily: dict[date, float | None] = field(default_factory=dict)
    override_trailing: dict[date, float | None] = field(default_factory=dict)
    tta_minutes: list[float] = field(default_factory=list)
    psi_daily: dict[str, dict[date, float]] = field(default_factory=dict)     # dimension -> day -> psi
    cost_per_day: dict[date, float] = field(default_factory=dict)
    notes_per_day: dict[date, float] = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    alerts: list[dict] = field(default_factory=list)
    gold: list[dict] = field(default_factory=list)
    gates: list[dict] = field(default_factory=list)

    @property
    def cost_per_1000_notes(self) -> dict[date, float]:
        return {d: c / self.notes_per_day[d] * 1000 for d, c in self.cost_per_day.items()
                if self.notes_per_day.get(d)}


def _bins(rows: list[dict], dimension: str) -> dict[date, dict[str, float]]:
    out: dict[date, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for r in rows:
        metric, day = r["metric"], r["day"]
        if dimension == "category":
            if metric == "findings":
                out[day][r["category"]] += r["v"]
            elif metric == "notes_without_findings":
                out[day][NONE_BIN] += r["v"]
        elif metric.startswith(f"{dimension}:"):
            out[day][metric.split(":", 1)[1]] += r["v"]
    return out


def _window_sum(per_day: dict[date, dict[str, float]], start: date, end: date) -> dict[str, float]:
    total: dict[str, float] = defaultdict(float)
    for day, bins in per_day.items():
        if start <= day < end:
            for k, v in bins.items():
                total[k] += v
    return total


def psi_series(rows: list[dict], ms: MonitorSettings, days: list[date]) -> dict[str, dict[date, float]]:
    """PSI per day: the trailing ``current_days`` ending that day vs the first ``baseline_days`` of data."""
    out: dict[str, dict[date, float]] = {}
    if not days:
        return out
    first = days[0]
    baseline_end = first + timedelta(days=ms.baseline_days)
    for dimension in ("category", "note_length", "note_type"):
        per_day = _bins(rows, dimension)
        baseline = _window_sum(per_day, first, baseline_end)
        if sum(baseline.values()) < ms.drift_min_count:
            continue
        series = {}
        for day in days:
            if day < baseline_end:
                continue
            current = _window_sum(per_day, day - timedelta(days=ms.current_days - 1), day + timedelta(days=1))
            if sum(current.values()) >= ms.drift_min_count:
                series[day] = psi(baseline, current)
        out[dimension] = series
    return out


async def collect(store: MonitorStore, ms: MonitorSettings, tenant: str) -> ReportData:
    rows = await store.daily_all(tenant)
    tasks = await store.tasks(tenant)
    llm = await store.llm_daily(tenant)
    data = ReportData(tenant=tenant)
    data.alerts, data.gold, data.gates = (await store.alerts(tenant), await store.gold_scores(tenant),
                                          await store.gate_decisions(tenant))
    days = {r["day"] for r in rows}
    days |= {r["written_time"].date() for r in tasks if r["written_time"]}
    days |= {r["day"] for r in llm}
    if days:
        lo, hi = min(days), max(days)
        data.days = [lo + timedelta(days=i) for i in range((hi - lo).days + 1)]
    per_kind: dict[str, dict[date, int]] = defaultdict(lambda: defaultdict(int))
    for r in tasks:
        if r["written_time"]:
            per_kind[r["kind"] or "task"][r["written_time"].date()] += 1
    data.tasks_per_day = {k: dict(v) for k, v in per_kind.items()}
    acted = [(r["action_time"].date(), r["action"]) for r in tasks if r["action"] and r["action_time"]]
    for day in data.days:
        today = [a for d, a in acted if d == day]
        trailing = [a for d, a in acted if day - timedelta(days=ms.override_window_days - 1) <= d <= day]
        data.override_daily[day] = rate(today.count("overridden"), len(today))
        data.override_trailing[day] = rate(trailing.count("overridden"), len(trailing))
    data.tta_minutes = [r["tta_seconds"] / 60 for r in tasks if r["tta_seconds"] is not None]
    data.psi_daily = psi_series(rows, ms, data.days)
    for r in rows:
        if r["metric"] == "notes":
            data.notes_per_day[r["day"]] = data.notes_per_day.get(r["day"], 0.0) + r["v"]
    for r in llm:
        data.cost_per_day[r["day"]] = data.cost_per_day.get(r["day"], 0.0) + float(r["cost_usd"])
    notes = sum(data.notes_per_day.values())
    cost = sum(data.cost_per_day.values())
    overridden = sum(1 for _, a in acted if a == "overridden")
    data.summary = {
        "period": f"{data.days[0]} to {data.days[-1]}" if data.days else "no data",
        "notes": int(notes), "findings": int(sum(r["v"] for r in rows if r["metric"] == "findings")),
        "tasks_created": sum(1 for r in tasks if r["written_time"]), "accepted": len(acted) - overridden,
        "overridden": overridden, "ignored": sum(1 for r in tasks if r["ignored_at"]),
        "override_rate": rate(overridden, len(acted)),
        "tta_p50_min": percentile(data.tta_minutes, 50), "tta_p95_min": percentile(data.tta_minutes, 95),
        "llm_cost_usd": cost, "llm_tokens": sum(int(r["prompt_tokens"]) + int(r["completion_tokens"]) for r in llm),
        "cost_per_1000_notes": cost / notes * 1000 if notes else None,
        "reasons": _reasons(tasks),
    }
    data.summary["alert_groups"] = alert_groups(data.alerts)
    return data


def alert_groups(alerts: list[dict]) -> list[dict]:
    """One line per (kind, dimension): how often, first and last period (stream time), worst value."""
    groups: dict[tuple[str, str], dict] = {}
    for a in alerts:
        when = (a.get("period_end") or a["time"]).date()
        g = groups.setdefault((a["kind"], a["dimension"]), {"kind": a["kind"], "dimension": a["dimension"], "count": 0,
                                                            "first": when, "last": when, "max": a["value"],
                                                            "threshold": a["threshold"]})
        g["count"] += 1
        g["first"], g["last"], g["max"] = min(g["first"], when), max(g["last"], when), max(g["max"], a["value"])
    return sorted(groups.values(), key=lambda g: (g["kind"], g["dimension"]))


def _reasons(tasks: list[dict]) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for r in tasks:
        if r["action"] == "overridden":
            out[r["reason"] or "none"] += 1
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))
