"""Durable subscription state and the per-subscription event queue (PostgreSQL).

``ehr_sub_state``: one row per Subscription: its parsed spec, server status, the count of
events since the subscription started (``events_since_start``, the last event number handed
out) and ``delivered_through`` (the last event number the endpoint acknowledged). Events with
``delivered_through < number <= events_since_start`` are the queue, delivered in order.
``ehr_sub_events``: every event ever numbered (for delivery and for ``$events``).
The delivery worker leases a due row (``lease_until``) so several server processes never
deliver the same subscription at once.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from services.core.tenantdb import setting_rls_sql
from services.ehr.subscriptions.spec import SubscriptionSpec

STEPS = [
    """
    CREATE TABLE IF NOT EXISTS ehr_sub_state (
        tenant text NOT NULL,
        id text NOT NULL,
        topic text NOT NULL,
        status text NOT NULL,
        spec jsonb NOT NULL,
        fhir_base text NOT NULL,
        events_since_start bigint NOT NULL DEFAULT 0,
        delivered_through bigint NOT NULL DEFAULT 0,
        failures integer NOT NULL DEFAULT 0,
        next_attempt_at timestamptz NOT NULL DEFAULT now(),
        last_sent_at timestamptz,
        lease_until timestamptz,
        last_error text,
        created_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (tenant, id)
    );
    CREATE INDEX IF NOT EXISTS ehr_sub_state_topic ON ehr_sub_state (tenant, topic) WHERE status <> 'off';
    CREATE INDEX IF NOT EXISTS ehr_sub_state_due ON ehr_sub_state (next_attempt_at) WHERE status <> 'off';
    CREATE TABLE IF NOT EXISTS ehr_sub_events (
        tenant text NOT NULL,
        subscription text NOT NULL,
        number bigint NOT NULL,
        occurred_at timestamptz NOT NULL,
        focus_type text NOT NULL,
        focus_id text NOT NULL,
        focus_version integer NOT NULL,
        action text NOT NULL,
        PRIMARY KEY (tenant, subscription, number)
    );
    """,
    # forced row-level security (the request pool's role is services.ehr.storage.EHR_ROLE);
    # the delivery lease spans tenants and runs on the platform pool
    setting_rls_sql("ehr_sub_state", "vigil_ehr") + setting_rls_sql("ehr_sub_events", "vigil_ehr"),
]

_COLUMNS = ("tenant, id, topic, status, spec, fhir_base, events_since_start, delivered_through, failures, "
            "next_attempt_at, last_sent_at, created_at, last_error")


@dataclass
class SubState:
    tenant: str
    id: str
    topic: str
    status: str
    spec: SubscriptionSpec
    fhir_base: str
    events_since_start: int
    delivered_through: int
    failures: int
    next_attempt_at: datetime
    last_sent_at: datetime | None
    created_at: datetime
    last_error: str | None

    @property
    def reference(self) -> str:
        return f"{self.fhir_base}/Subscription/{self.id}"


@dataclass(frozen=True)
class QueuedEvent:
    number: int
    occurred_at: datetime
    focus_type: str
    focus_id: str
    focus_version: int
    action: str
    content: dict | None = None  # the exact version, when asked for


def _state(row) -> SubState:
    spec = row["spec"] if isinstance(row["spec"], dict) else json.loads(row["spec"])
    return SubState(row["tenant"], row["id"], row["topic"], row["status"], SubscriptionSpec.from_json(spec),
                    row["fhir_base"], row["events_since_start"], row["delivered_through"], row["failures"],
                    row["next_attempt_at"], row["last_sent_at"], row["created_at"], row["last_error"])


async def get(conn: asyncpg.Connection, tenant: str, sid: str, *, for_update: bool = False) -> SubState | None:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM ehr_sub_state WHERE tenant=$1 AND id=$2"
                              + (" FOR UPDATE" if for_update else ""), tenant, sid)
    return _state(row) if row else None


async def list_for(conn: asyncpg.Connection, tenant: str, ids: list[str] | None = None,
                   statuses: list[str] | None = None) -> list[SubState]:
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM ehr_sub_state WHERE tenant=$1 AND ($2::text[] IS NULL OR id = ANY($2)) "
        "AND ($3::text[] IS NULL OR status = ANY($3)) ORDER BY id", tenant, ids, statuses)
    return [_state(r) for r in rows]


async def upsert(conn: asyncpg.Connection, tenant: str, sid: str, spec: SubscriptionSpec, status: str,
                 fhir_base: str) -> None:
    await conn.execute(
        "INSERT INTO ehr_sub_state (tenant, id, topic, status, spec, fhir_base) VALUES ($1,$2,$3,$4,$5,$6) "
        "ON CONFLICT (tenant, id) DO UPDATE SET topic=EXCLUDED.topic, status=EXCLUDED.status, spec=EXCLUDED.spec, "
        "fhir_base=EXCLUDED.fhir_base, failures=0, next_attempt_at=now(), last_error=NULL",
        tenant, sid, spec.topic, status, spec.as_json(), fhir_base)


async def remove(conn: asyncpg.Connection, tenant: str, sid: str) -> None:
    await conn.execute("DELETE FROM ehr_sub_events WHERE tenant=$1 AND subscription=$2", tenant, sid)
    await conn.execute("DELETE FROM ehr_sub_state WHERE tenant=$1 AND id=$2", tenant, sid)


async def candidates(conn: asyncpg.Connection, tenant: str, topics: list[str]) -> list[tuple[str, dict]]:
    rows = await conn.fetch("SELECT id, spec FROM ehr_sub_state WHERE tenant=$1 AND topic = ANY($2) "
                            "AND status <> 'off' ORDER BY id", tenant, topics)
    return [(r["id"], r["spec"] if isinstance(r["spec"], dict) else json.loads(r["spec"])) for r in rows]


async def enqueue(conn: asyncpg.Connection, tenant: str, sid: str, occurred_at: datetime, focus_type: str,
                  focus_id: str, version: int, action: str) -> int:
    """Number the next event of the subscription (the row lock held to commit keeps numbers in
    commit order, without gaps) and queue it. Returns the event number."""
    number = await conn.fetchval(
        "UPDATE ehr_sub_state SET events_since_start = events_since_start + 1 WHERE tenant=$1 AND id=$2 "
        "RETURNING events_since_start", tenant, sid)
    await conn.execute(
        "INSERT INTO ehr_sub_events (tenant, subscription, number, occurred_at, focus_type, focus_id, "
        "focus_version, action) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)",
        tenant, sid, number, occurred_at, focus_type, focus_id, version, action)
    return number


async def events(conn: asyncpg.Connection, tenant: str, sid: str, low: int, high: int, limit: int, *,
                 with_content: bool = False) -> list[QueuedEvent]:
    """Events numbered low..high (inclusive), oldest first, at most ``limit``."""
    content = ("h.content" if with_content else "NULL::jsonb") + " AS content"
    rows = await conn.fetch(
        f"SELECT e.number, e.occurred_at, e.focus_type, e.focus_id, e.focus_version, e.action, {content} "
        "FROM ehr_sub_events e LEFT JOIN ehr_history h ON h.tenant=e.tenant AND h.type=e.focus_type "
        "AND h.id=e.focus_id AND h.version=e.focus_version AND NOT h.deleted "
        "WHERE e.tenant=$1 AND e.subscription=$2 AND e.number BETWEEN $3 AND $4 ORDER BY e.number LIMIT $5",
        tenant, sid, low, high, limit)
    return [QueuedEvent(r["number"], r["occurred_at"], r["focus_type"], r["focus_id"], r["focus_version"],
                        r["action"], r["content"]) for r in rows]


async def lease_due(conn: asyncpg.Connection, lease_s: float, limit: int) -> list[SubState]:
    """Lease subscriptions with work due: a handshake, queued events, a heartbeat, or an end passed.
    Nothing is delivered for a tenant whose EHR plays the epic-like family (services.ehr.families)."""
    rows = await conn.fetch(
        f"""UPDATE ehr_sub_state s SET lease_until = now() + $1 * interval '1 second'
        FROM (SELECT tenant, id FROM ehr_sub_state q
              WHERE status IN ('requested', 'active', 'error') AND next_attempt_at <= now()
                AND NOT EXISTS (SELECT 1 FROM ehr_tenants t WHERE t.id = q.tenant AND t.family = 'epic-like')
                AND (lease_until IS NULL OR lease_until < now())
                AND (status = 'requested' OR events_since_start > delivered_through
                     OR (status = 'active' AND spec->>'heartbeat_s' IS NOT NULL
                         AND coalesce(last_sent_at, created_at)
                             + (spec->>'heartbeat_s')::int * interval '1 second' <= now())
                     OR (spec->>'end' IS NOT NULL AND (spec->>'end')::timestamptz <= now()))
              ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED) d
        WHERE s.tenant = d.tenant AND s.id = d.id
        RETURNING {', '.join('s.' + c.strip() for c in _COLUMNS.split(','))}""", lease_s, limit)
    return [_state(r) for r in rows]


async def notifications_dropped(conn: asyncpg.Connection, tenant: str) -> bool:
    """The tenant's ``drop_notifications`` fault (services.ehr.faults) is on."""
    return bool(await conn.fetchval("SELECT (faults->>'drop_notifications')::boolean FROM ehr_tenants WHERE id=$1",
                                    tenant))


async def delivered(conn: asyncpg.Connection, st: SubState, through: int | None) -> None:
    """A notification was acknowledged: advance, clear failures, release the lease."""
    await conn.execute(
        "UPDATE ehr_sub_state SET delivered_through = GREATEST(delivered_through, coalesce($3, 0)), failures=0, "
        "last_sent_at=now(), next_attempt_at=now(), lease_until=NULL, last_error=NULL WHERE tenant=$1 AND id=$2",
        st.tenant, st.id, through)


async def failed(conn: asyncpg.Connection, st: SubState, retry_in_s: float, error: str) -> int:
    """A notification failed: count it, schedule the retry, release the lease. Returns the failure count."""
    return await conn.fetchval(
        "UPDATE ehr_sub_state SET failures = failures + 1, next_attempt_at = now() + $3 * interval '1 second', "
        "lease_until=NULL, last_error=$4 WHERE tenant=$1 AND id=$2 RETURNING failures",
        st.tenant, st.id, retry_in_s, error[:200])


async def set_status(conn: asyncpg.Connection, tenant: str, sid: str, status: str) -> None:
    """The status only: the lease stays with whoever holds it. A worker changes the status after it
    released its own lease, and by then another worker may hold a new one for the next batch;
    clearing that lease would let a third worker send the same batch again."""
    await conn.execute("UPDATE ehr_sub_state SET status=$3 WHERE tenant=$1 AND id=$2", tenant, sid, status)


async def release(conn: asyncpg.Connection, st: SubState) -> None:
    await conn.execute("UPDATE ehr_sub_state SET lease_until=NULL WHERE tenant=$1 AND id=$2", st.tenant, st.id)
