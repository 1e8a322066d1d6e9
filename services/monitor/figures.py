"""The monitor's figures for a period: one definition and one source each, the ids behind every
figure, the invariants between them, and their reconciliation with the decision ledger.

A period is ``[since, until)`` in event time (the CloudEvents ``time`` of the event, or the
Task's written time). Every figure is computed here, from the rows the stream processor wrote
exactly once per event id (``monitor_events``, ``monitor_tasks``); the report, `vigil report
--explain` and `vigil gate` all read these and nothing else.

| figure | definition | source | ids |
|---|---|---|---|
| ``notes`` | notes (document versions) with a findings event in the period | ``monitor_events`` (findings) | ``<document id>/<version>`` |
| ``notes_with_findings`` | of those, notes with at least one finding | same | same |
| ``findings`` | findings on those notes (newest findings event of each note) | same | ``<document>#<category>`` |
| ``decisions`` | triage decisions emitted in the period | ``monitor_events`` (decision) | decision ids |
| ``tasks_written`` | inbox Tasks created in the period | ``monitor_tasks`` (written time) | Task ids |
| ``accepted`` / ``overridden`` | of those Tasks, the first clinician action, when it came before ``until`` | ``monitor_tasks`` | Task ids |
| ``ignored`` | of those Tasks, no action ``ignored_after_s`` after being written (marked before ``until``) | ``monitor_tasks`` | Task ids |
| ``override_rate`` | overridden / (accepted + overridden) | the two above | Task ids |
| ``time_to_alert`` | note time -> Task created, of the Tasks written | ``monitor_tasks`` | Task ids |

Invariants (each one checked, with the ids that break it): notes >= notes with findings;
findings >= decisions; decisions >= Tasks written (and every Task's decision is a decision of the
period); accepted + overridden + ignored <= Tasks written. A Task whose decision was emitted just
before ``since`` breaks the third one at a period's edge: the check names it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import asyncpg

from services.core import contracts
from services.monitor.stats import percentile, rate
from services.monitor.store import MonitorStore

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
NAMES = ("notes", "notes_with_findings", "findings", "decisions", "tasks_written", "accepted", "overridden",
         "ignored", "override_rate", "time_to_alert")
SOURCES = {
    "notes": "monitor_events: findings events (distinct document versions), event time in the period",
    "notes_with_findings": "monitor_events: findings events with at least one finding",
    "findings": "monitor_events: findings of each note's newest findings event",
    "decisions": f"monitor_events: {contracts.TRIAGE_DECISION} events, event time in the period",
    "tasks_written": "monitor_tasks: Tasks created (task-written, action created), written time in the period",
    "accepted": "monitor_tasks: first clinician action 'accepted' on those Tasks, before the period's end",
    "overridden": "monitor_tasks: first clinician action 'overridden' on those Tasks, before the period's end",
    "ignored": "monitor_tasks: those Tasks without an action after the ignore threshold",
    "override_rate": "overridden / (accepted + overridden)",
    "time_to_alert": "monitor_tasks: note time -> Task created, of the Tasks written in the period",
}


@dataclass(frozen=True)
class Figure:
    name: str
    value: float | None
    ids: tuple[str, ...]
    source: str


@dataclass(frozen=True)
class Check:
    """An invariant or a reconciliation: ``holds``, the two sides, and the ids that break it."""
    name: str
    holds: bool
    left: float
    right: float
    detail: str
    ids: tuple[str, ...] = ()


@dataclass
class Figures:
    tenant: str
    since: datetime
    until: datetime
    figures: dict[str, Figure] = field(default_factory=dict)
    invariants: list[Check] = field(default_factory=list)
    reconciliation: list[Check] = field(default_factory=list)
    tasks: list[dict] = field(default_factory=list)
    notes: list[dict] = field(default_factory=list)
    decisions: list[dict] = field(default_factory=list)

    def value(self, name: str) -> float | None:
        return self.figures[name].value

    def count(self, name: str) -> int:
        return int(self.figures[name].value or 0)

    @property
    def tta_seconds(self) -> list[float]:
        return [t["tta_seconds"] for t in self.tasks if t["tta_seconds"] is not None]

    @property
    def reasons(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.tasks:
            if t["action"] == "overridden":
                out[t["reason"] or "none"] = out.get(t["reason"] or "none", 0) + 1
        return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))

    @property
    def consistent(self) -> bool:
        return all(c.holds for c in self.invariants) and all(c.holds for c in self.reconciliation)

    def as_dict(self) -> dict:
        return {"tenant": self.tenant, "since": self.since.isoformat(), "until": self.until.isoformat(),
                "figures": {n: {"value": f.value, "n_ids": len(f.ids), "source": f.source}
                            for n, f in self.figures.items()},
                "invariants": [_check(c) for c in self.invariants],
                "reconciliation": [_check(c) for c in self.reconciliation]}


def _check(c: Check) -> dict:
    return {"name": c.name, "holds": c.holds, "left": c.left, "right": c.right, "detail": c.detail,
            "ids": list(c.ids)}


def build(tenant: str, since: datetime, until: datetime, notes: list[dict], decisions: list[dict],
          tasks: list[dict]) -> Figures:
    """The figures from the period's rows (pure; ``compute`` reads the rows)."""
    out = Figures(tenant, since, until, tasks=tasks, notes=notes, decisions=decisions)
    with_findings = [n for n in notes if (n["findings"] or 0) > 0]
    finding_ids = tuple(f"{n['document']}#{c}" for n in with_findings
                        for c in (n["category"] or "").split(",") if c)
    accepted = [t for t in tasks if t["action"] == "accepted"]
    overridden = [t for t in tasks if t["action"] == "overridden"]
    ignored = [t for t in tasks if t["action"] is None and t["ignored_at"] is not None]
    tta = [t for t in tasks if t["tta_seconds"] is not None]

    def add(name: str, value, ids) -> None:
        out.figures[name] = Figure(name, value, tuple(ids), SOURCES[name])

    add("notes", len(notes), (n["document"] for n in notes))
    add("notes_with_findings", len(with_findings), (n["document"] for n in with_findings))
    add("findings", sum(n["findings"] or 0 for n in with_findings), finding_ids)
    add("decisions", len(decisions), (d["decision_id"] for d in decisions))
    add("tasks_written", len(tasks), (t["task_id"] for t in tasks))
    add("accepted", len(accepted), (t["task_id"] for t in accepted))
    add("overridden", len(overridden), (t["task_id"] for t in overridden))
    add("ignored", len(ignored), (t["task_id"] for t in ignored))
    add("override_rate", rate(len(overridden), len(accepted) + len(overridden)),
        (t["task_id"] for t in accepted + overridden))
    add("time_to_alert", percentile([t["tta_seconds"] for t in tta], 95), (t["task_id"] for t in tta))
    out.invariants = invariants(out)
    return out


def invariants(f: Figures) -> list[Check]:
    decision_ids = set(f.figures["decisions"].ids)
    orphans = tuple(t["task_id"] for t in f.tasks if t["decision_id"] not in decision_ids)
    outcomes = f.count("accepted") + f.count("overridden") + f.count("ignored")
    return [
        Check("notes >= notes with findings", f.count("notes") >= f.count("notes_with_findings"),
              f.count("notes"), f.count("notes_with_findings"), "every note with findings is a note seen"),
        Check("findings >= decisions", f.count("findings") >= f.count("decisions"), f.count("findings"),
              f.count("decisions"), "triage decides at most once per finding"),
        Check("decisions >= Tasks written", f.count("decisions") >= f.count("tasks_written") and not orphans,
              f.count("decisions"), f.count("tasks_written"),
              "every Task written comes from a decision of the period"
              + (f"; {len(orphans)} Task(s) whose decision is not in the period" if orphans else ""), orphans),
        Check("accepted + overridden + ignored <= Tasks written", outcomes <= f.count("tasks_written"), outcomes,
              f.count("tasks_written"), "each Task has at most one outcome"),
    ]


def reconcile(f: Figures, ledger_rows: list[dict] | None) -> list[Check]:
    """The figures against the decision ledger's rows of the period (``DecisionLedger.since``):
    decisions, Tasks written and clinician actions must be the same ids on both sides, and every
    ledger decision's note must be a note the monitor saw with findings. No ledger: no checks."""
    if ledger_rows is None:
        return []
    rows = [r for r in ledger_rows if r["suppressed"] is None and f.since <= r["time"] < f.until]
    checks = []

    def same(name: str, monitor: set[str], ledger: set[str]) -> None:
        missing, extra = sorted(ledger - monitor), sorted(monitor - ledger)
        detail = "same ids" if not missing and not extra else \
            f"{len(missing)} in the ledger only, {len(extra)} in the monitor only"
        checks.append(Check(f"{name}: monitor = ledger", not missing and not extra, len(monitor), len(ledger),
                            detail, tuple(f"ledger-only:{i}" for i in missing) + tuple(f"monitor-only:{i}"
                                                                                    for i in extra)))

    same("decisions", set(f.figures["decisions"].ids), {r["id"] for r in rows})
    created = [r for r in rows if r["task_id"] and r["written_at"] and r["episode_action"] != "update"]
    same("tasks_written", set(f.figures["tasks_written"].ids), {r["task_id"] for r in created})
    for action in ("accepted", "overridden"):
        same(action, set(f.figures[action].ids),
             {r["task_id"] for r in created if r["clinician_action"] == action and r["action_time"] < f.until})
    seen = set(f.figures["notes_with_findings"].ids)
    unseen = sorted({f"{r['document_id']}/{r['document_version']}" for r in rows} - seen)
    checks.append(Check("ledger notes seen by the monitor", not unseen, len(seen), len(unseen),
                        "every decision's note has a findings event in the period" if not unseen else
                        f"{len(unseen)} note(s) of ledger decisions without a findings event in the period",
                        tuple(unseen)))
    return checks


async def compute(store: MonitorStore, tenant: str, since: datetime | None = None,
                  until: datetime | None = None) -> Figures:
    """The figures of ``[since, until)``; without bounds, everything the monitor counted."""
    since, until = await bounds(store, tenant, since, until)
    return build(tenant, since, until, await store.period_notes(tenant, since, until),
                 await store.period_decisions(tenant, since, until), await store.period_tasks(tenant, since, until))


async def bounds(store: MonitorStore, tenant: str, since: datetime | None,
                 until: datetime | None) -> tuple[datetime, datetime]:
    """The period asked for; a missing bound is the first counted event (``since``, whole second)
    or one second past the newest (``until``), so a default period covers exactly the data."""
    if since is not None and until is not None:
        return since, until
    lo, hi = await store.data_span(tenant)
    now = datetime.now(timezone.utc)
    if until is None:
        until = (hi.replace(microsecond=0) + timedelta(seconds=1)) if hi is not None else now
    if since is None:
        since = lo.replace(microsecond=0) if lo is not None and lo < until else until - timedelta(days=1)
    return since, until


#: The columns of triage's decision ledger (``vigil_decisions``) the reconciliation compares.
_LEDGER_SQL = ("SELECT id, time, suppressed, task_id, written_at, episode_action, clinician_action, action_time, "
               "document_id, document_version FROM vigil_decisions WHERE time >= $1 ORDER BY time, id")


async def ledger_rows(pools, tenant: str, since: datetime) -> list[dict] | None:
    """The decision ledger's rows from ``since`` on (no quotes), read-only: the reconciliation's
    independent second source, so it is read where triage keeps it, not rebuilt from the events it
    checks. None when this database has no ledger (a monitor-only installation)."""
    try:
        async with pools.tx(tenant, readonly=True) as conn:
            return [dict(r) for r in await conn.fetch(_LEDGER_SQL, since)]
    except (asyncpg.UndefinedTableError, asyncpg.InsufficientPrivilegeError):
        return None
