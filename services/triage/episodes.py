"""Open episodes: one per (patient, category) while its Task is open in the EHR.

Table ``vigil_triage_episodes`` (tenant RLS): a partial unique index allows one ``open``
episode per (tenant, patient, category). A decision either opens an episode (new key) or joins
the open one (same key, so writeback updates the existing Task). An episode closes when the
clinician completes or rejects its Task (the ``feedback`` stream), or, lazily, when it had no
new evidence for ``episode_idle_days``.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import asyncpg

from services.core.events import deterministic_id
from services.core.tenantdb import tenant_rls_sql

SCHEMA_MODULE = "triage.episodes"
SCHEMA_STEPS = [
    """
CREATE TABLE IF NOT EXISTS vigil_triage_episodes (
    tenant text NOT NULL,
    episode_key text NOT NULL,
    patient text NOT NULL,
    category text NOT NULL,
    status text NOT NULL CHECK (status IN ('open', 'closed')),
    max_grade integer,
    decisions integer NOT NULL DEFAULT 1,
    opened_by text NOT NULL,
    last_decision text NOT NULL,
    opened_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    closed_at timestamptz,
    close_reason text,
    PRIMARY KEY (tenant, episode_key)
);
CREATE UNIQUE INDEX IF NOT EXISTS vigil_triage_episodes_open
    ON vigil_triage_episodes (tenant, patient, category) WHERE status = 'open';
""",
    tenant_rls_sql("vigil_triage_episodes", ("SELECT", "INSERT", "UPDATE")),
]


@dataclass(frozen=True)
class Joined:
    key: str
    action: str                 # "open" | "update"
    previous_grade: int | None  # highest grade of the episode before this decision


async def current(conn: asyncpg.Connection, patient: str, category: str, idle_days: int) -> dict | None:
    """The open episode of (patient, category), closing it first if it went idle."""
    row = await conn.fetchrow("SELECT * FROM vigil_triage_episodes WHERE patient = $1 AND category = $2 "
                              "AND status = 'open' FOR UPDATE", patient, category)
    if row is None:
        return None
    if row["updated_at"] < datetime.now(timezone.utc) - timedelta(days=idle_days):
        await close(conn, row["episode_key"], "idle")
        return None
    return dict(row)


async def join(conn: asyncpg.Connection, tenant: str, patient: str, category: str, grade: int | None,
               decision_id: str, idle_days: int) -> Joined:
    """Open a new episode or join the open one; records the decision and the new highest grade."""
    row = await current(conn, patient, category, idle_days)
    if row is None:
        key = deterministic_id("episode", tenant, patient, category, decision_id)
        await conn.execute(
            "INSERT INTO vigil_triage_episodes (tenant, episode_key, patient, category, status, max_grade, "
            "opened_by, last_decision) VALUES ($1, $2, $3, $4, 'open', $5, $6, $6)",
            tenant, key, patient, category, grade, decision_id)
        return Joined(key, "open", None)
    await conn.execute(
        "UPDATE vigil_triage_episodes SET max_grade = GREATEST(max_grade, $2), decisions = decisions + 1, "
        "last_decision = $3, updated_at = now() WHERE episode_key = $1", row["episode_key"], grade, decision_id)
    return Joined(row["episode_key"], "update", row["max_grade"])


async def close(conn: asyncpg.Connection, episode_key: str, reason: str) -> bool:
    status = await conn.execute("UPDATE vigil_triage_episodes SET status = 'closed', closed_at = now(), "
                                "close_reason = $2 WHERE episode_key = $1 AND status = 'open'", episode_key, reason)
    return not status.endswith(" 0")


async def get(conn: asyncpg.Connection, episode_key: str) -> dict | None:
    row = await conn.fetchrow("SELECT * FROM vigil_triage_episodes WHERE episode_key = $1", episode_key)
    return dict(row) if row else None
