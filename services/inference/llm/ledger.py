"""Token and cost accounting per tenant in PostgreSQL, and the daily budget check.

One row per model call (and per cache hit, at zero cost), so spend, hit rate and retries can
be reported per tenant, day and purpose (extraction, the scheduling agent's conversations): every
model call of the platform goes through this service, and this service alone writes the table. Days are UTC. The table has forced row-level security
(``services.core.tenantdb``): rows are written and read only through the tenant's own pool and
role, one transaction per unit of work, so one tenant can neither see nor spend another's budget.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import asyncpg

from services.core.db import _lock_key, ensure_schema
from services.core.tenantdb import APP_ROLE, TenantPools, enable_tenant_rls

MODULE = "inference_llm_ledger"
TABLE = "inference_llm_usage"
STEPS = [
    """CREATE TABLE IF NOT EXISTS inference_llm_usage (
        id bigserial PRIMARY KEY,
        tenant text NOT NULL,
        day date NOT NULL,
        at timestamptz NOT NULL DEFAULT now(),
        document_id text NOT NULL,
        model text NOT NULL,
        prompt_hash text NOT NULL,
        prompt_tokens integer NOT NULL CHECK (prompt_tokens >= 0),
        completion_tokens integer NOT NULL CHECK (completion_tokens >= 0),
        cost_usd numeric(14, 6) NOT NULL CHECK (cost_usd >= 0),
        outcome text NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS inference_llm_usage_tenant_day ON inference_llm_usage (tenant, day)",
    # what the call was for (services.inference.llm.config.PURPOSES); document_id holds the
    # conversation id for the scheduling agent's calls
    "ALTER TABLE inference_llm_usage ADD COLUMN IF NOT EXISTS purpose text NOT NULL DEFAULT 'extraction'",
]
OUTCOMES = ("ok", "repaired", "invalid", "cache_hit")


@dataclass(frozen=True)
class Usage:
    tenant: str
    document_id: str
    model: str
    prompt_hash: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    outcome: str
    purpose: str = "extraction"


def today() -> dt.date:
    return dt.datetime.now(dt.timezone.utc).date()


def seconds_until_next_day(now: dt.datetime | None = None) -> float:
    now = now or dt.datetime.now(dt.timezone.utc)
    tomorrow = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), tzinfo=dt.timezone.utc)
    return max(1.0, (tomorrow - now).total_seconds())


class Ledger:
    """``admin`` (the platform pool) owns the schema; ``tenants`` holds one pool per tenant role."""

    def __init__(self, admin: asyncpg.Pool, tenants: TenantPools):
        self.admin = admin
        self.tenants = tenants

    async def ensure_schema(self) -> None:
        await ensure_schema(self.admin, MODULE, STEPS)
        # The policy is (re)applied at every start rather than frozen into a numbered step, so it
        # follows services.core.tenantdb when that changes. Idempotent; serialized by a lock.
        async with self.admin.acquire() as conn:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", _lock_key(f"{MODULE}:rls"))
                await enable_tenant_rls(conn, TABLE, ("SELECT", "INSERT"))
                await conn.execute(f"GRANT USAGE ON SEQUENCE {TABLE}_id_seq TO {APP_ROLE}")

    async def record(self, usage: Usage) -> None:
        if usage.outcome not in OUTCOMES:
            raise ValueError(f"unknown ledger outcome {usage.outcome!r}")
        async with self.tenants.tx(usage.tenant) as conn:
            await conn.execute(
                "INSERT INTO inference_llm_usage (tenant, day, document_id, model, prompt_hash, prompt_tokens,"
                " completion_tokens, cost_usd, outcome, purpose) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                usage.tenant, today(), usage.document_id, usage.model, usage.prompt_hash, usage.prompt_tokens,
                usage.completion_tokens, usage.cost_usd, usage.outcome, usage.purpose)

    async def spent_today(self, tenant: str) -> float:
        async with self.tenants.tx(tenant, readonly=True) as conn:
            value = await conn.fetchval("SELECT coalesce(sum(cost_usd), 0) FROM inference_llm_usage "
                                        "WHERE tenant = $1 AND day = $2", tenant, today())
        return float(value)

    async def rows(self, tenant: str, document_id: str | None = None) -> list[dict]:
        query = "SELECT * FROM inference_llm_usage WHERE tenant = $1"
        args: list = [tenant]
        if document_id is not None:
            query += " AND document_id = $2"
            args.append(document_id)
        async with self.tenants.tx(tenant, readonly=True) as conn:
            return [dict(r) for r in await conn.fetch(query + " ORDER BY id", *args)]
