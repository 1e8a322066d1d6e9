"""PostgreSQL table of the bus: claimed effects (``vigil_bus_effects``).

``vigil_bus_effects`` lets a handler make a database side effect exactly once: call
``ctx.claim(conn)`` inside the transaction that performs it (see ``Context.claim``).

Dead letters have no table here: the ``vigil.<tenant>.dlq`` record carries the whole dead
letter (``failures.dlq_headers``: the stack and the attempt history among its headers), and
the control service, which alone indexes the topic into ``vigil_dlq_entries``, serves it. The
``vigil_dead_letters`` table earlier versions wrote (module ``core.bus``) is no longer created
or written; a database migrated by them keeps it, unread, until an operator drops it.
"""
from __future__ import annotations

import asyncpg

#: A module name of its own: the effects table was step 2 of ``core.bus``, whose step 1 made the
#: dead-letter table; ``IF NOT EXISTS`` makes this step a no-op where that migration ran.
MODULE = "core.bus.effects"
STEPS = [
    """CREATE TABLE IF NOT EXISTS vigil_bus_effects (
        tenant text NOT NULL,
        stage text NOT NULL,
        event_id text NOT NULL,
        claimed_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (tenant, stage, event_id)
    )""",
]


async def claim(conn: asyncpg.Connection, tenant: str, stage: str, event_id: str) -> bool:
    """True the first time (tenant, stage, event id) is claimed; commits or rolls back with ``conn``."""
    got = await conn.fetchval(
        "INSERT INTO vigil_bus_effects (tenant, stage, event_id) VALUES ($1, $2, $3) "
        "ON CONFLICT DO NOTHING RETURNING 1", tenant, stage, event_id)
    return got == 1
