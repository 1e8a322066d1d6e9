"""The report's numbers for a period: the figures (``services.monitor.figures``, the one source of
every count on the page), their series per hour, day and ISO week, drift from the window table,
LLM cost from the inference ledger, and the plain-language summary a clinical lead reads first.
No PHI: ids and codes only.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from services.monitor import figures as figs
from services.monitor import units
from services.monitor.config import MonitorSettings
from services.monitor.drift import NONE_BIN
from services.monitor.stats import percentile, psi
from services.monitor.store import MonitorStore

#: Data spanning less than this is drawn per hour instead of per day.
HOURLY_BELOW = timedelta(days=2)


@dataclass
class ReportData:
    tenant: str
    f: figs.Figures
    ms: MonitorSettings
    days: list[date] = field(default_factory=list)
    hourly: bool = False
    #: bucket start (hour or day) -> kind -> Tasks written
    tasks_per_bucket: dict[datetime, dict[str, int]] = field(default_factory=dict)
    tasks_per_week: dict[date, int] = field(default_factory=dict)
    #: bucket start -> (overridden, clinician actions), by action time
    actions_per_bucket: dict[datetime, tuple[int, int]] = field(default_factory=dict)
    actions_per_week: dict[date, tuple[int, int]] = field(default_factory=dict)
    psi_daily: dict[str, dict[date, float]] = field(default_factory=dict)     # dimension -> day -> psi
    cost_per_day: dict[date, float] = field(default_factory=dict)
    notes_per_day: dict[date, float] = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    paragraph: str = ""
    alerts: list[dict] = field(default_factory=list)
    gold: list[dict] = field(default_factory=list)
    gates: list[dict] = field(default_factory=list)

    @property
    def tta_seconds(self) -> list[float]:
        return self.f.tta_seconds

    @property
    def tta_unit(self) -> str:
        return units.duration_unit(self.f.tta_seconds)[0]

    @property
    def cost_per_1000_notes(self) -> dict[date, float]:
        return {d: c / self.notes_per_day[d] * 1000 for d, c in self.cost_per_day.items()
                if self.notes_per_day.get(d)}


def bucket_of(when: datetime, hourly: bool) -> datetime:
    return when.replace(minute=0, second=0, microsecond=0) if hourly else \
        when.replace(hour=0, minute=0, second=0, microsecond=0)


def week_of(day: date) -> date:
    """The Monday that starts ``day``'s ISO week."""
    return day - timedelta(days=day.weekday())


def series(data: ReportData) -> None:
    """Tasks written and clinician actions per bucket (hour or day) and per ISO week."""
    tasks = data.f.tasks
    times = [t["written_time"] for t in tasks] + [t["action_time"] for t in tasks if t["action_time"]]
    data.hourly = bool(times) and max(times) - min(times) < HOURLY_BELOW
    per_bucket: dict[datetime, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    per_week: dict[date, int] = defaultdict(int)
    acted: dict[datetime, list[int]] = defaultdict(lambda: [0, 0])
    acted_week: dict[date, list[int]] = defaultdict(lambda: [0, 0])
    for t in tasks:
        per_bucket[bucket_of(t["written_time"], data.hourly)][t["kind"] or "task"] += 1
        per_week[week_of(t["written_time"].date())] += 1
        if t["action"] in ("accepted", "overridden"):
            for counter in (acted[bucket_of(t["action_time"], data.hourly)], acted_week[week_of(t["action_time"].date())]):
                counter[0] += t["action"] == "overridden"
                counter[1] += 1
    data.tasks_per_bucket = {k: dict(v) for k, v in sorted(per_bucket.items())}
    data.tasks_per_week = dict(sorted(per_week.items()))
    data.actions_per_bucket = {k: (v[0], v[1]) for k, v in sorted(acted.items())}
    data.actions_per_week = {k: (v[0], v[1]) for k, v in sorted(acted_week.items())}


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
        series_ = {}
        for day in days:
            if day < baseline_end:
                continue
            current = _window_sum(per_day, day - timedelta(days=ms.current_days - 1), day + timedelta(days=1))
            if sum(current.values()) >= ms.drift_min_count:
                series_[day] = psi(baseline, current)
        out[dimension] = series_
    return out


def span_words(since: datetime, until: datetime) -> str:
    seconds = (until - since).total_seconds()
    if seconds < 2 * 3600:
        return f"{max(1, round(seconds / 60))} minutes"
    if seconds < 2 * 86400:
        return f"{round(seconds / 3600)} hours"
    return f"{round(seconds / 86400)} days"


def paragraph(f: figs.Figures, ms: MonitorSettings) -> str:
    """The one paragraph at the top of the report: what happened, against the gates, in words."""
    period = f"over {span_words(f.since, f.until)} ({units.period(f.since, f.until)})"
    if not f.count("notes") and not f.count("tasks_written"):
        return f"No notes and no inbox Tasks {period}: there is nothing to judge yet."
    out = [f"{f.tenant}, {period}: Vigil read {f.count('notes')} notes, found {f.count('findings')} findings on "
           f"{f.count('notes_with_findings')} of them, made {f.count('decisions')} decisions and wrote "
           f"{f.count('tasks_written')} Tasks to clinicians' inboxes."]
    accepted, overridden, ignored = f.count("accepted"), f.count("overridden"), f.count("ignored")
    acted = accepted + overridden
    open_ = f.count("tasks_written") - acted - ignored
    out.append(f"Clinicians accepted {accepted} and overrode {overridden}; {ignored} went unanswered past "
               f"{units.duration(ms.ignored_after_s)} and {open_} are still open.")
    value = f.value("override_rate")
    if value is not None:
        verdict = "above" if value > ms.gate_max_override_rate else "within"
        sentence = (f"Override rate {units.percent(value)} over {span_words(f.since, f.until)}, {verdict} the "
                    f"{units.percent(ms.gate_max_override_rate)} gate")
        reasons = f.reasons
        if reasons:
            top, n = next(iter(reasons.items()))
            sentence += f": {n} of {overridden} overrides say '{top.replace('-', ' ')}'"
        if acted < ms.gate_min_actions:
            sentence += f" (only {acted} clinician actions; the gate needs {ms.gate_min_actions})"
        out.append(sentence + ".")
    tta = f.tta_seconds
    if tta:
        p50, p95 = percentile(tta, 50), percentile(tta, 95)
        verdict = "within" if p95 <= ms.gate_max_tta_p95_s else "beyond"
        out.append(f"Time from note to inbox Task: median {units.duration(p50)}, 95th percentile "
                   f"{units.duration(p95)}, {verdict} the {units.duration(ms.gate_max_tta_p95_s)} gate.")
    broken = [c for c in f.invariants + f.reconciliation if not c.holds]
    if broken:
        out.append(f"{len(broken)} consistency check(s) do not hold ({'; '.join(c.name for c in broken)}): "
                   "see the table at the end before signing off.")
    elif f.reconciliation:
        out.append("Every figure reconciles with the decision ledger.")
    return " ".join(out)


async def collect(store: MonitorStore, ms: MonitorSettings, tenant: str, since: datetime | None = None,
                  until: datetime | None = None, ledger: list[dict] | None = None) -> ReportData:
    f = await figs.compute(store, tenant, since, until)
    f.reconciliation = figs.reconcile(f, ledger)
    data = ReportData(tenant=tenant, f=f, ms=ms)
    rows = await store.daily_all_between(tenant, f.since, f.until)
    llm = [r for r in await store.llm_daily(tenant) if f.since.date() <= r["day"] <= f.until.date()]
    # an alert's period ends at a window's end, up to one window past the period's last event
    slack = timedelta(seconds=ms.window_s)
    data.alerts = [a for a in await store.alerts(tenant)
                   if f.since <= (a.get("period_end") or a["time"]) < f.until + slack]
    data.gold = [g for g in await store.gold_scores(tenant) if f.since <= g["time"] < f.until]
    data.gates = [g for g in await store.gate_decisions(tenant) if f.since <= g["time"] < f.until]
    days = {r["day"] for r in rows} | {t["written_time"].date() for t in f.tasks} | {r["day"] for r in llm}
    if days:
        lo, hi = min(days), max(days)
        data.days = [lo + timedelta(days=i) for i in range((hi - lo).days + 1)]
    series(data)
    data.psi_daily = psi_series(rows, ms, data.days)
    for r in rows:
        if r["metric"] == "notes":
            data.notes_per_day[r["day"]] = data.notes_per_day.get(r["day"], 0.0) + r["v"]
    for r in llm:
        data.cost_per_day[r["day"]] = data.cost_per_day.get(r["day"], 0.0) + float(r["cost_usd"])
    notes = f.count("notes")
    cost = sum(data.cost_per_day.values())
    tta = f.tta_seconds
    data.summary = {
        "period": units.period(f.since, f.until),
        "notes": notes, "notes_with_findings": f.count("notes_with_findings"), "findings": f.count("findings"),
        "decisions": f.count("decisions"), "tasks_created": f.count("tasks_written"),
        "accepted": f.count("accepted"), "overridden": f.count("overridden"), "ignored": f.count("ignored"),
        "override_rate": f.value("override_rate"),
        "tta_p50_s": percentile(tta, 50), "tta_p95_s": percentile(tta, 95),
        "llm_cost_usd": cost, "llm_tokens": sum(int(r["prompt_tokens"]) + int(r["completion_tokens"]) for r in llm),
        "cost_per_1000_notes": cost / notes * 1000 if notes and cost else None,
        "reasons": f.reasons,
        "alert_groups": alert_groups(data.alerts),
    }
    data.paragraph = paragraph(f, ms)
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
