"""PostgreSQL access: pools and schema migrations.

Each module that owns tables declares its DDL as a list of numbered steps and calls
``ensure_schema(pool, "<module>", STEPS)``; steps already applied are skipped, and an
advisory lock makes concurrent start-ups safe.
"""
from __future__ import annotations

import hashlib
from typing import Sequence

import asyncpg

from services.core.config import Settings

POOL_MIN = 1
POOL_MAX = 10

_BOOTSTRAP = """
CREATE TABLE IF NOT EXISTS vigil_schema_steps (
    module text NOT NULL,
    step integer NOT NULL,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (module, step)
)"""


async def create_pool(settings: Settings, *, min_size: int = POOL_MIN, max_size: int = POOL_MAX,
                      **kwargs) -> asyncpg.Pool:
    return await asyncpg.create_pool(settings.postgres_dsn, min_size=min_size, max_size=max_size, **kwargs)


def _lock_key(module: str) -> int:
    return int.from_bytes(hashlib.sha256(module.encode()).digest()[:8], "big", signed=True)


async def ensure_schema(pool: asyncpg.Pool, module: str, steps: Sequence[str]) -> int:
    """Apply the steps of ``module`` not yet applied; returns how many were applied now."""
    applied = 0
    async with pool.acquire() as conn:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _lock_key("vigil_schema_steps"))
            await conn.execute(_BOOTSTRAP)
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _lock_key(module))
            done = {r["step"]: r["checksum"] for r in
                    await conn.fetch("SELECT step, checksum FROM vigil_schema_steps WHERE module = $1", module)}
            for number, ddl in enumerate(steps, start=1):
                checksum = hashlib.sha256(ddl.encode()).hexdigest()[:16]
                if number in done:
                    if done[number] != checksum:
                        raise RuntimeError(f"schema step {module}#{number} changed after it was applied; "
                                           "add a new step instead of editing an old one")
                    continue
                await conn.execute(ddl)
                await conn.execute("INSERT INTO vigil_schema_steps (module, step, checksum) VALUES ($1, $2, $3)",
                                   module, number, checksum)
                applied += 1
    return applied
