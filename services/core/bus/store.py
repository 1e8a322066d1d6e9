"""PostgreSQL tables of the bus: dead letters (full stack, attempt history) and claimed effects.

``vigil_dead_letters`` is keyed by the dead-letter id (the ``dlq-id`` header), so the DLQ
record and its row meet; re-delivering the same failure updates the row instead of adding one.
``vigil_bus_effects`` lets a handler make a database side effect exactly once: call
``ctx.claim(conn)`` inside the transaction that performs it (see ``Context.claim``).
"""
from __future__ import annotations

import json

import asyncpg

MODULE = "core.bus"
STEPS = [
    """CREATE TABLE IF NOT EXISTS vigil_dead_letters (
        id text PRIMARY KEY,
        tenant text NOT NULL,
        stage text NOT NULL,
        event_id text,
        event_type text,
        original_topic text NOT NULL,
        original_partition integer NOT NULL,
        original_offset bigint NOT NULL,
        error_class text NOT NULL,
        error_code text NOT NULL,
        fingerprint text NOT NULL,
        message text NOT NULL,
        stack text NOT NULL,
        attempts integer NOT NULL,
        history jsonb NOT NULL,
        first_failure timestamptz NOT NULL,
        last_failure timestamptz NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX IF NOT EXISTS vigil_dead_letters_tenant ON vigil_dead_letters (tenant, created_at)""",
    """CREATE TABLE IF NOT EXISTS vigil_bus_effects (
        tenant text NOT NULL,
        stage text NOT NULL,
        event_id text NOT NULL,
        claimed_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (tenant, stage, event_id)
    )""",
]


async def record_dead_letter(pool: asyncpg.Pool, row: dict) -> None:
    await pool.execute(
        """INSERT INTO vigil_dead_letters (id, tenant, stage, event_id, event_type, original_topic,
               original_partition, original_offset, error_class, error_code, fingerprint, message, stack,
               attempts, history, first_failure, last_failure)
           VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15::jsonb,$16,$17)
           ON CONFLICT (id) DO UPDATE SET attempts = EXCLUDED.attempts, history = EXCLUDED.history,
               last_failure = EXCLUDED.last_failure, stack = EXCLUDED.stack""",
        row["id"], row["tenant"], row["stage"], row["event_id"], row["event_type"], row["original_topic"],
        row["original_partition"], row["original_offset"], row["error_class"], row["error_code"],
        row["fingerprint"], row["message"], row["stack"], row["attempts"], json.dumps(row["history"]),
        row["first_failure"], row["last_failure"])


async def claim(conn: asyncpg.Connection, tenant: str, stage: str, event_id: str) -> bool:
    """True the first time (tenant, stage, event id) is claimed; commits or rolls back with ``conn``."""
    got = await conn.fetchval(
        "INSERT INTO vigil_bus_effects (tenant, stage, event_id) VALUES ($1, $2, $3) "
        "ON CONFLICT DO NOTHING RETURNING 1", tenant, stage, event_id)
    return got == 1
