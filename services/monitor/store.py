"""Reads and writes of the monitor's tables, one tenant unit of work each (``TenantPools``)."""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import asyncpg

from services.core import contracts
from services.core.tenantdb import TenantPools
from services.monitor.facts import TaskAction, TaskWritten

LLM_USAGE_TABLE = "inference_llm_usage"  # the inference service's ledger (read only, same RLS rules)


@dataclass(frozen=True)
class WindowRow:
    window_s: int
    start: datetime
    metric: str
    category: str
    version: str
    value: float


@dataclass(frozen=True)
class EventRow:
    """What the monitor keeps of one counted event (``monitor_events``): ids and codes, no PHI."""
    event_id: str
    type: str
    time: datetime
    document: str | None = None       # "<DocumentReference id>/<version>" of the note
    decision_id: str | None = None
    task_id: str | None = None
    category: str | None = None
    version: str | None = None
    kind: str | None = None
    findings: int | None = None


@dataclass(frozen=True)
class Alert:
    id: str
    kind: str           # psi | gold-f1-drop | override-rate
    dimension: str      # category, note_length, note_type, gold, or the category/version of an override rate
    value: float
    threshold: float
    period_end: datetime | None = None
    details: dict = field(default_factory=dict)


class MonitorStore:
    def __init__(self, pools: TenantPools):
        self.pools = pools

    # -- stream output (inside the caller's tenant transaction: ``claim`` first) -----------------
    @staticmethod
    async def claim(conn: asyncpg.Connection, tenant: str, row: EventRow) -> bool:
        """Record ``row``; False when its event id was already counted (a redelivery)."""
        got = await conn.fetchval(
            "INSERT INTO monitor_events (tenant, event_id, type, time, document, decision_id, task_id, category, "
            "version, kind, findings) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) "
            "ON CONFLICT (tenant, event_id) DO NOTHING RETURNING 1", tenant, row.event_id, row.type, row.time,
            row.document, row.decision_id, row.task_id, row.category, row.version, row.kind, row.findings)
        return got == 1

    @staticmethod
    async def add_to_windows(conn: asyncpg.Connection, tenant: str, rows: list[WindowRow]) -> dict[tuple, float]:
        """Add each row's value to its window (one statement); returns {(metric, category, version): new value}."""
        if not rows:
            return {}
        summed: dict[tuple, float] = {}
        for r in rows:  # one row per key: ON CONFLICT DO UPDATE may touch a row once per statement
            key = (r.window_s, r.start, r.metric, r.category, r.version)
            summed[key] = summed.get(key, 0.0) + r.value
        keys = list(summed)
        got = await conn.fetch(
            "INSERT INTO monitor_windows (tenant, window_s, window_start, metric, category, version, value) "
            "SELECT $1, u.w, u.s, u.m, u.c, u.v, u.x FROM unnest($2::int[], $3::timestamptz[], $4::text[], "
            "$5::text[], $6::text[], $7::float8[]) AS u(w, s, m, c, v, x) "
            "ON CONFLICT (tenant, window_s, window_start, metric, category, version) DO UPDATE SET "
            "value = monitor_windows.value + EXCLUDED.value, updated_at = now() "
            "RETURNING metric, category, version, value", tenant, [k[0] for k in keys], [k[1] for k in keys],
            [k[2] for k in keys], [k[3] for k in keys], [k[4] for k in keys], [summed[k] for k in keys])
        return {(r["metric"], r["category"], r["version"]): float(r["value"]) for r in got}

    @staticmethod
    async def decision_version(conn: asyncpg.Connection, tenant: str, decision_id: str) -> str | None:
        return await conn.fetchval("SELECT version FROM monitor_events WHERE tenant = $1 AND decision_id = $2 AND "
                                   f"type = '{contracts.TRIAGE_DECISION}' LIMIT 1", tenant, decision_id)

    @staticmethod
    async def task_row(conn: asyncpg.Connection, tenant: str, task_id: str) -> dict | None:
        row = await conn.fetchrow("SELECT * FROM monitor_tasks WHERE tenant = $1 AND task_id = $2 FOR UPDATE",
                                  tenant, task_id)
        return dict(row) if row else None

    @staticmethod
    async def tta_samples(conn: asyncpg.Connection, tenant: str, category: str, version: str, start: datetime,
                          end: datetime) -> list[float]:
        rows = await conn.fetch("SELECT tta_seconds FROM monitor_tasks WHERE tenant = $1 AND category = $2 AND "
                                "version = $3 AND written_time >= $4 AND written_time < $5 AND tta_seconds IS NOT "
                                "NULL", tenant, category, version, start, end)
        return [r["tta_seconds"] for r in rows]

    async def trailing_actions(self, tenant: str, days: int, category: str | None = None,
                               version: str | None = None) -> tuple[dict[str, int], datetime | None]:
        """First clinician actions (of one category/version, or of all) in the ``days`` ending at the
        tenant's newest action (its stream clock, so the order events arrive in does not matter):
        ({action: n}, that newest action time)."""
        async with self.pools.tx(tenant, readonly=True) as conn:
            rows = await conn.fetch(
                "WITH newest AS (SELECT max(action_time) AS m FROM monitor_tasks WHERE tenant = $1 AND action IS NOT "
                "NULL AND written_time IS NOT NULL) SELECT action, count(*) AS n, (SELECT m FROM newest) AS m "
                "FROM monitor_tasks WHERE tenant = $1 AND action IS NOT NULL AND written_time IS NOT NULL AND "
                "action_time > (SELECT m FROM newest) - make_interval(days => $2) AND "
                "action_time <= (SELECT m FROM newest) AND ($3::text IS NULL OR category = $3) AND "
                "($4::text IS NULL OR version = $4) GROUP BY action", tenant, days, category, version)
        return {r["action"]: r["n"] for r in rows}, (rows[0]["m"] if rows else None)

    async def task_written(self, tenant: str, t: TaskWritten, version: str,
                           conn: asyncpg.Connection | None = None) -> None:
        if conn is None:
            async with self.pools.tx(tenant) as own:
                return await self.task_written(tenant, t, version, own)
        await conn.execute(
            "INSERT INTO monitor_tasks (tenant, task_id, decision_id, category, version, kind, note_time, "
            "written_time, tta_seconds) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (tenant, task_id) "
            "DO UPDATE SET written_time = EXCLUDED.written_time, note_time = EXCLUDED.note_time, "
            "tta_seconds = EXCLUDED.tta_seconds, kind = EXCLUDED.kind, decision_id = EXCLUDED.decision_id, "
            "category = EXCLUDED.category, version = EXCLUDED.version WHERE monitor_tasks.written_time IS NULL",
            tenant, t.task_id, t.decision_id, t.category, version, t.kind, t.note_time, t.written_time,
            t.tta_seconds)

    async def task_action(self, tenant: str, a: TaskAction, category: str, version: str, reason: str | None,
                          conn: asyncpg.Connection | None = None) -> None:
        if conn is None:
            async with self.pools.tx(tenant) as own:
                return await self.task_action(tenant, a, category, version, reason, own)
        await conn.execute(
            "INSERT INTO monitor_tasks (tenant, task_id, category, version, action, reason, action_time) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (tenant, task_id) DO UPDATE SET "
            "action = EXCLUDED.action, reason = EXCLUDED.reason, action_time = EXCLUDED.action_time "
            "WHERE monitor_tasks.action IS NULL", tenant, a.task_id, category, version, a.action, reason, a.time)

    async def mark_ignored(self, tenant: str, now: datetime, after_s: int) -> list[tuple[str, str]]:
        """Tasks still without an action ``after_s`` after they were written; returns (category, version)."""
        async with self.pools.tx(tenant) as conn:
            rows = await conn.fetch(
                "UPDATE monitor_tasks SET ignored_at = $2 WHERE tenant = $1 AND action IS NULL AND ignored_at IS NULL "
                "AND written_time IS NOT NULL AND written_time < $2::timestamptz - make_interval(secs => $3::float8) "
                "RETURNING category, version", tenant, now, float(after_s))
        return [(r["category"], r["version"]) for r in rows]

    # -- alerts and scores ---------------------------------------------------------------------
    async def add_alert(self, tenant: str, alert: Alert) -> bool:
        async with self.pools.tx(tenant) as conn:
            status = await conn.execute(
                "INSERT INTO monitor_alerts (tenant, id, kind, dimension, value, threshold, period_end, details) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb) ON CONFLICT DO NOTHING", tenant, alert.id, alert.kind,
                alert.dimension, alert.value, alert.threshold, alert.period_end, json.dumps(alert.details))
        return status.endswith(" 1")

    async def alerts(self, tenant: str, kind: str | None = None) -> list[dict]:
        async with self.pools.tx(tenant, readonly=True) as conn:
            rows = await conn.fetch("SELECT * FROM monitor_alerts WHERE tenant = $1 AND "
                                    "($2::text IS NULL OR kind = $2) ORDER BY time", tenant, kind)
        return [_plain(r) for r in rows]

    async def add_gold_score(self, tenant: str, report: dict, gold: str) -> dict:
        micro, gates = report["micro"], report["gates"]
        row = {"id": str(uuid.uuid4()), "engine": report["engine"]["name"],
               "engine_version": report["engine"]["version"], "gold": gold, "n_notes": report["n_notes"],
               "f1": micro["f1"], "precision": micro["precision"], "recall": micro["recall"],
               "f1_lower": gates["f1_lower"], "precision_lower": gates["precision_lower"],
               "gates_passed": bool(gates["passed"])}
        async with self.pools.tx(tenant) as conn:
            await conn.execute(
                "INSERT INTO monitor_gold_scores (tenant, id, engine, engine_version, gold, n_notes, f1, precision, "
                "recall, f1_lower, precision_lower, gates_passed) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)", tenant, *row.values())
        return row

    async def gold_scores(self, tenant: str) -> list[dict]:
        async with self.pools.tx(tenant, readonly=True) as conn:
            rows = await conn.fetch("SELECT * FROM monitor_gold_scores WHERE tenant = $1 ORDER BY time", tenant)
        return [_plain(r) for r in rows]

    async def add_gate_decision(self, conn: asyncpg.Connection, tenant: str, from_mode: str, to_mode: str,
                                passed: bool, checks: list[dict], actor: str) -> str:
        decision_id = str(uuid.uuid4())
        await conn.execute("INSERT INTO monitor_gate_decisions (tenant, id, from_mode, to_mode, passed, checks, actor) "
                           "VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7)", tenant, decision_id, from_mode, to_mode,
                           passed, json.dumps(checks), actor)
        return decision_id

    async def latest_gate(self, tenant: str, to_mode: str) -> dict | None:
        async with self.pools.tx(tenant, readonly=True) as conn:
            row = await conn.fetchrow("SELECT * FROM monitor_gate_decisions WHERE tenant = $1 AND to_mode = $2 "
                                      "ORDER BY time DESC LIMIT 1", tenant, to_mode)
        return _plain(row) if row else None

    # -- queries for drift, gates and reports --------------------------------------------------
    async def latest_window_start(self, tenant: str) -> datetime | None:
        async with self.pools.tx(tenant, readonly=True) as conn:
            return await conn.fetchval("SELECT max(window_start) FROM monitor_windows WHERE tenant = $1", tenant)

    async def sums(self, tenant: str, metrics: list[str], start: datetime, end: datetime,
                   *, by: str = "category") -> dict[tuple[str, str], float]:
        """{(metric, category or version): sum of window values} for windows starting in [start, end)."""
        column = {"category": "category", "version": "version"}[by]
        async with self.pools.tx(tenant, readonly=True) as conn:
            rows = await conn.fetch(
                f"SELECT metric, {column} AS k, sum(value) AS v FROM monitor_windows WHERE tenant = $1 AND "
                "metric = ANY($2::text[]) AND window_start >= $3 AND window_start < $4 GROUP BY metric, k",
                tenant, metrics, start, end)
        return {(r["metric"], r["k"]): float(r["v"]) for r in rows}

    async def prefixed_sums(self, tenant: str, prefix: str, start: datetime, end: datetime) -> dict[str, float]:
        async with self.pools.tx(tenant, readonly=True) as conn:
            rows = await conn.fetch(
                "SELECT metric, sum(value) AS v FROM monitor_windows WHERE tenant = $1 AND starts_with(metric, $2) "
                "AND window_start >= $3 AND window_start < $4 GROUP BY metric", tenant, prefix, start, end)
        return {r["metric"][len(prefix):]: float(r["v"]) for r in rows}

    async def daily_all(self, tenant: str) -> list[dict]:
        """Every metric summed per UTC day: [{day, metric, category, v}]."""
        return await self._rows(tenant,
                "SELECT (window_start AT TIME ZONE 'UTC')::date AS day, metric, category, sum(value) AS v "
                "FROM monitor_windows WHERE tenant = $1 GROUP BY 1, 2, 3 ORDER BY 1", tenant)

    async def gate_decisions(self, tenant: str) -> list[dict]:
        async with self.pools.tx(tenant, readonly=True) as conn:
            rows = await conn.fetch("SELECT * FROM monitor_gate_decisions WHERE tenant = $1 ORDER BY time", tenant)
        return [_plain(r) for r in rows]

    async def _rows(self, tenant: str, sql: str, *args) -> list[dict]:
        """A read-only query in the tenant's pool, as plain dicts."""
        async with self.pools.tx(tenant, readonly=True) as conn:
            return [_plain(r) for r in await conn.fetch(sql, *args)]

    async def period_notes(self, tenant: str, since: datetime, until: datetime) -> list[dict]:
        """One row per note (document version) whose findings event time lies in [since, until): its
        newest findings event in that period (``findings`` = number of findings, ``category`` = their codes)."""
        return await self._rows(tenant,
                "SELECT DISTINCT ON (document) event_id, document, time, findings, category, version "
                f"FROM monitor_events WHERE tenant = $1 AND type = '{contracts.EXTRACTION_FINDINGS}' "
                "AND time >= $2 AND "
                "time < $3 ORDER BY document, time DESC, event_id", tenant, since, until)

    async def period_decisions(self, tenant: str, since: datetime, until: datetime) -> list[dict]:
        """One row per decision whose event time lies in [since, until)."""
        return await self._rows(tenant,
                "SELECT DISTINCT ON (decision_id) event_id, decision_id, document, time, category, version, kind "
                f"FROM monitor_events WHERE tenant = $1 AND type = '{contracts.TRIAGE_DECISION}' AND time >= $2 AND "
                "time < $3 ORDER BY decision_id, time", tenant, since, until)

    async def period_tasks(self, tenant: str, since: datetime, until: datetime) -> list[dict]:
        """Tasks written (created) in [since, until), with their outcome as known before ``until``."""
        return await self._rows(tenant,
                "SELECT task_id, decision_id, category, version, kind, note_time, written_time, tta_seconds, "
                "CASE WHEN action_time < $3 THEN action END AS action, "
                "CASE WHEN action_time < $3 THEN reason END AS reason, "
                "CASE WHEN action_time < $3 THEN action_time END AS action_time, "
                "CASE WHEN ignored_at < $3 THEN ignored_at END AS ignored_at "
                "FROM monitor_tasks WHERE tenant = $1 AND written_time >= $2 AND written_time < $3 "
                "ORDER BY written_time, task_id", tenant, since, until)

    async def daily_all_between(self, tenant: str, since: datetime, until: datetime) -> list[dict]:
        """``daily_all`` for windows starting in [since, until)."""
        return await self._rows(tenant,
                "SELECT (window_start AT TIME ZONE 'UTC')::date AS day, metric, category, sum(value) AS v "
                "FROM monitor_windows WHERE tenant = $1 AND window_start >= $2 AND window_start < $3 "
                "GROUP BY 1, 2, 3 ORDER BY 1", tenant, since, until)

    async def data_span(self, tenant: str) -> tuple[datetime | None, datetime | None]:
        """First and last event time the monitor counted for the tenant."""
        async with self.pools.tx(tenant, readonly=True) as conn:
            row = await conn.fetchrow(
                "SELECT min(t) AS lo, max(t) AS hi FROM (SELECT time AS t FROM monitor_events WHERE tenant = $1 "
                "UNION ALL SELECT coalesce(written_time, action_time) FROM monitor_tasks WHERE tenant = $1) AS s",
                tenant)
        return row["lo"], row["hi"]

    async def tasks(self, tenant: str, since: datetime | None = None) -> list[dict]:
        async with self.pools.tx(tenant, readonly=True) as conn:
            rows = await conn.fetch("SELECT * FROM monitor_tasks WHERE tenant = $1 AND ($2::timestamptz IS NULL OR "
                                    "coalesce(written_time, action_time) >= $2) ORDER BY written_time NULLS LAST",
                                    tenant, since)
        return [_plain(r) for r in rows]

    async def llm_daily(self, tenant: str) -> list[dict]:
        """Tokens and cost per UTC day and model from the inference ledger ([] when it does not exist)."""
        try:
            async with self.pools.tx(tenant, readonly=True) as conn:
                rows = await conn.fetch(
                    f"SELECT day, model, sum(prompt_tokens)::bigint AS prompt_tokens, "
                    f"sum(completion_tokens)::bigint AS completion_tokens, sum(cost_usd)::float8 AS cost_usd "
                    f"FROM {LLM_USAGE_TABLE} WHERE tenant = $1 GROUP BY day, model ORDER BY day", tenant)
        except (asyncpg.UndefinedTableError, asyncpg.InsufficientPrivilegeError):
            return []
        return [_plain(r) for r in rows]


def _plain(row) -> dict:
    out = dict(row)
    for key, value in out.items():
        if key in ("checks", "details") and isinstance(value, str):
            out[key] = json.loads(value)
    return out


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def days_ago(when: datetime, days: float) -> datetime:
    return when - timedelta(days=days)
