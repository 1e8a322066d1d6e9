"""The action ledger: every side-effecting scheduling call, keyed by its idempotency key.

Table ``vigil_scheduling_actions`` (tenant RLS, through ``TenantPools``): tenant, key, kind,
request (ids and hashes only, never message text), response (the ``ActionResult`` fields),
status, attempts, times. ``run`` makes a call exactly-once per key:

1. ``INSERT ... ON CONFLICT DO NOTHING`` a ``pending`` row (its own unit of work, so the row
   survives a crash in step 2 and the next attempt knows the call may have happened);
2. in a second unit of work, ``SELECT ... FOR UPDATE`` the row (concurrent calls with the
   same key wait here); a final status is returned as recorded (``replayed``); otherwise the
   operation runs (told whether an earlier attempt may have reached the EHR, so it can
   reconcile first: ``resumed`` is true when the row already existed) and its result is
   stored in the same transaction.

A retryable failure leaves the row ``pending``; the next call with the key resumes it.
"""
from __future__ import annotations

import json
from typing import Awaitable, Callable

from services.core.errors import NotFoundError, ValidationError
from services.core.tenantdb import TenantPools, tenant_rls_sql

SCHEMA_MODULE = "tools.scheduling_actions"
SCHEMA_STEPS = [
    """
CREATE TABLE IF NOT EXISTS vigil_scheduling_actions (
    tenant text NOT NULL,
    key text NOT NULL,
    kind text NOT NULL,
    request jsonb NOT NULL,
    response jsonb,
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'verified', 'conflict', 'unverified', 'failed')),
    attempts integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, key)
);
CREATE INDEX IF NOT EXISTS vigil_scheduling_actions_time ON vigil_scheduling_actions (tenant, created_at);
""",
    tenant_rls_sql("vigil_scheduling_actions", ("SELECT", "INSERT", "UPDATE")),
]
#: ``consent``: the patient's unambiguous yes (their Communication, by reference and hash) and what it
#: agreed to (action, slot, time, appointment), recorded by the agent before the action it allows.
KINDS = ("book", "cancel", "message", "staff-task", "consent")
FINAL = ("verified", "conflict", "unverified", "failed")
MAX_KEY_LENGTH = 200

Perform = Callable[[bool], Awaitable[dict]]


def check_key(key: str) -> str:
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise ValidationError(f"idempotency_key must be 1-{MAX_KEY_LENGTH} printable characters",
                              code="bad_idempotency_key")
    return key


class ActionLedger:
    def __init__(self, pools: TenantPools):
        self.pools = pools

    async def run(self, tenant: str, key: str, kind: str, request: dict, perform: Perform) -> tuple[dict, bool]:
        """``(response, replayed)``; ``perform(resumed)`` returns the response dict (with ``status``)."""
        if kind not in KINDS:
            raise ValueError(f"unknown action kind {kind!r}")
        check_key(key)
        body = json.dumps(request, sort_keys=True)
        async with self.pools.tx(tenant) as conn:
            inserted = await conn.fetchval("INSERT INTO vigil_scheduling_actions (tenant, key, kind, request) "
                                           "VALUES ($1, $2, $3, $4::jsonb) ON CONFLICT DO NOTHING RETURNING 1",
                                           tenant, key, kind, body)
        async with self.pools.tx(tenant) as conn:
            row = await conn.fetchrow("SELECT kind, request, response, status, attempts FROM vigil_scheduling_actions "
                                      "WHERE tenant = $1 AND key = $2 FOR UPDATE", tenant, key)
            if row is None:
                raise NotFoundError("the action row vanished", code="ledger_row_missing")
            if row["kind"] != kind or json.loads(row["request"]) != json.loads(body):
                raise ValidationError("idempotency_key was already used for a different request",
                                      code="idempotency_key_reused")
            if row["status"] in FINAL:
                return json.loads(row["response"]), True
            response = await perform(not inserted)
            status = response.get("status", "failed")
            if status not in FINAL:
                raise ValueError(f"an action must end in one of {FINAL}, got {status!r}")
            await conn.execute("UPDATE vigil_scheduling_actions SET status = $3, response = $4::jsonb, "
                               "attempts = attempts + 1, updated_at = now() WHERE tenant = $1 AND key = $2",
                               tenant, key, status, json.dumps(response, sort_keys=True))
        return response, False

    async def get(self, tenant: str, key: str) -> dict | None:
        check_key(key)
        async with self.pools.tx(tenant, readonly=True) as conn:
            row = await conn.fetchrow("SELECT kind, status, response FROM vigil_scheduling_actions "
                                      "WHERE tenant = $1 AND key = $2", tenant, key)
        if row is None:
            return None
        response = json.loads(row["response"]) if row["response"] else {}
        return {**response, "kind": row["kind"], "status": row["status"], "idempotency_key": key}
