"""The decision ledger: what each agent decided, from which inputs, what was written, what the
clinician did about it. Owned by triage, the only service that migrates and writes it: the triage
stage records decisions; triage's ``triage-feedback`` stage adds what writeback wrote
(``vigil.writeback.task-written``) and what the clinician did (``vigil.ehr.task-updated`` and
``vigil.cdshooks.feedback``), all from ``feedback``.
Other services learn about decisions from those events; only the command layer (``vigil
decisions``, the demo, the crawl report) reads this module directly.

Table ``vigil_decisions`` (tenant RLS, through ``TenantPools``), one row per decision, keyed by
(tenant, decision id). Decision ids are deterministic (derived from the input event), so a
redelivered input finds its decision already recorded and re-emits it instead of deciding twice.

Columns: id, time, tenant, agent, patient, input refs and hashes (document id and version,
findings event id, sha256 of the note text), engine, engine version, prompt hash, category,
grade, kind, episode key, mode, write (whether writeback may write it), suppressed (why it was
not emitted, e.g. ``kill-switch``), output (the decision event's data *without* the quote),
confidence, quote (AES-GCM envelope, purpose ``ledger-quote``; the quote is PHI), run (the batch
run a silent retrospective decision belongs to; null on the real-time lane), written refs
(``Type/id/_history/v``), task id, clinician action (accepted | overridden), its reason and time.

    ledger = DecisionLedger(pools, keyring)
    await ledger.record_decision(tenant, Decision(...))          # or insert(conn, ...) in your tx
    await ledger.record_writes(tenant, decision_id, ["Task/12/_history/1", "Provenance/9/_history/1"])
    await ledger.record_feedback(tenant, "Task/12", "overridden", "not-irae")   # or a decision id
    row = await ledger.get(tenant, decision_id)                  # dict; "quote" decrypted
    rows = await ledger.since(tenant, datetime(...))
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import Any

import asyncpg

from services.core import vigiltasks
from services.core.crypto import Keyring
from services.core.errors import NotFoundError, ValidationError
from services.core.evidence import LEDGER_PURPOSE as QUOTE_PURPOSE
from services.core.tenancy import check_tenant_id
from services.core.tenantdb import TenantPools, tenant_rls_sql

ACTIONS = ("accepted", "overridden")
#: Newest-first page size of ``since`` when no limit is given.
SINCE_LIMIT = 10_000

#: The migration steps keep the name they were first applied under (the table moved here from core).
SCHEMA_MODULE = "core.decisions"
SCHEMA_STEPS = [
    """
CREATE TABLE IF NOT EXISTS vigil_decisions (
    tenant text NOT NULL,
    id text NOT NULL,
    time timestamptz NOT NULL DEFAULT now(),
    agent text NOT NULL,
    patient text NOT NULL,
    document_id text,
    document_version text,
    findings_event_id text,
    note_sha256 text,
    engine text,
    engine_version text,
    prompt_hash text,
    category text NOT NULL,
    grade integer,
    kind text NOT NULL,
    episode_key text,
    episode_action text,
    mode text NOT NULL,
    write boolean NOT NULL,
    suppressed text,
    output jsonb NOT NULL,
    confidence double precision,
    quote bytea,
    written_refs jsonb NOT NULL DEFAULT '[]'::jsonb,
    written_at timestamptz,
    task_id text,
    clinician_action text CHECK (clinician_action IS NULL OR clinician_action IN ('accepted', 'overridden')),
    action_reason text,
    action_time timestamptz,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX IF NOT EXISTS vigil_decisions_time ON vigil_decisions (tenant, time);
CREATE INDEX IF NOT EXISTS vigil_decisions_task ON vigil_decisions (tenant, task_id) WHERE task_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS vigil_decisions_episode ON vigil_decisions (tenant, episode_key);
""",
    tenant_rls_sql("vigil_decisions", ("SELECT", "INSERT", "UPDATE")),
    """
ALTER TABLE vigil_decisions ADD COLUMN IF NOT EXISTS run text;
CREATE INDEX IF NOT EXISTS vigil_decisions_run ON vigil_decisions (tenant, run) WHERE run IS NOT NULL;
""",
]


@dataclass
class Decision:
    id: str
    agent: str
    patient: str
    category: str
    kind: str
    mode: str
    write: bool
    output: dict[str, Any]                 # the emitted event data; its finding.quote is stored encrypted
    grade: int | None = None
    document_id: str | None = None
    document_version: str | None = None
    findings_event_id: str | None = None
    note_sha256: str | None = None
    engine: str | None = None
    engine_version: str | None = None
    prompt_hash: str | None = None
    episode_key: str | None = None
    episode_action: str | None = None
    suppressed: str | None = None
    confidence: float | None = None
    run: str | None = None                 # the batch run (silent retrospective run) it belongs to
    time: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


_COLUMNS = ("id", "time", "agent", "patient", "document_id", "document_version", "findings_event_id",
            "note_sha256", "engine", "engine_version", "prompt_hash", "category", "grade", "kind", "episode_key",
            "episode_action", "mode", "write", "suppressed", "output", "confidence", "quote", "run")


def _split_quote(output: dict) -> tuple[dict, str | None]:
    finding = output.get("finding")
    if not isinstance(finding, dict) or "quote" not in finding:
        return output, None
    return {**output, "finding": {k: v for k, v in finding.items() if k != "quote"}}, finding["quote"]


async def insert(conn: asyncpg.Connection, tenant: str, d: Decision, keyring: Keyring | None) -> bool:
    """Record ``d`` inside the caller's tenant transaction; False if that id was already recorded."""
    output, quote = _split_quote(d.output)
    blob = None
    if quote:
        if keyring is None:
            raise ValidationError("a decision with a quote needs a keyring (quotes are stored encrypted)",
                                  code="no_keyring")
        blob = await keyring.encrypt(tenant, quote.encode("utf-8"), QUOTE_PURPOSE)
    # the fields as they are (``asdict`` would deep-copy the output only to replace it)
    values = {**{f.name: getattr(d, f.name) for f in fields(d)}, "output": json.dumps(output, sort_keys=True),
              "quote": blob}
    got = await conn.fetchval(
        f"INSERT INTO vigil_decisions (tenant, {', '.join(_COLUMNS)}) "
        f"VALUES ($1, {', '.join(f'${i}' for i in range(2, len(_COLUMNS) + 2))}) "
        "ON CONFLICT (tenant, id) DO NOTHING RETURNING 1", tenant, *(values[c] for c in _COLUMNS))
    return got == 1


async def fetch(conn: asyncpg.Connection, decision_id: str) -> dict | None:
    row = await conn.fetchrow("SELECT * FROM vigil_decisions WHERE id = $1", decision_id)
    return _row(row) if row else None


def _row(row) -> dict:
    out = dict(row)
    out["output"] = json.loads(out["output"]) if isinstance(out["output"], str) else out["output"]
    out["written_refs"] = json.loads(out["written_refs"]) if isinstance(out["written_refs"], str) \
        else out["written_refs"]
    return out


class DecisionLedger:
    def __init__(self, pools: TenantPools, keyring: Keyring | None = None):
        self.pools, self.keyring = pools, keyring

    async def record_decision(self, tenant: str, d: Decision) -> bool:
        async with self.pools.tx(check_tenant_id(tenant)) as conn:
            return await insert(conn, tenant, d, self.keyring)

    async def record_writes(self, tenant: str, decision_id: str, refs: list[str]) -> None:
        """What writeback wrote for the decision (``Type/id/_history/v``, read back); idempotent."""
        for ref in refs:
            if ref.count("/") != 3 or ref.split("/")[2] != "_history":
                raise ValidationError(f"written reference {ref!r} is not Type/id/_history/version",
                                      code="bad_reference")
        async with self.pools.tx(check_tenant_id(tenant)) as conn:
            status = await conn.execute(
                "UPDATE vigil_decisions SET written_refs = $2::jsonb, written_at = now(), "
                "task_id = COALESCE($3, task_id) WHERE id = $1", decision_id, json.dumps(refs),
                vigiltasks.task_id_of(refs))
        if status.endswith(" 0"):
            raise NotFoundError("no such decision", code="decision_not_found")

    async def record_feedback(self, tenant: str, ref: str, action: str, reason: str | None = None,
                              when: datetime | None = None) -> list[str]:
        """The clinician's action on a decision id or on ``Task/<id>`` (every decision of that Task
        without an action yet); returns the decision ids labelled."""
        if action not in ACTIONS:
            raise ValidationError(f"action {action!r} is not one of {', '.join(ACTIONS)}", code="bad_action")
        when = when or datetime.now(timezone.utc)
        async with self.pools.tx(check_tenant_id(tenant)) as conn:
            if ref.startswith("Task/"):
                rows = await conn.fetch(
                    "UPDATE vigil_decisions SET clinician_action = $2, action_reason = $3, action_time = $4 "
                    "WHERE task_id = $1 AND clinician_action IS NULL RETURNING id",
                    ref.split("/")[1], action, reason, when)
            else:
                rows = await conn.fetch(
                    "UPDATE vigil_decisions SET clinician_action = $2, action_reason = $3, action_time = $4 "
                    "WHERE id = $1 RETURNING id", ref, action, reason, when)
        return [r["id"] for r in rows]

    async def by_task(self, tenant: str, task_id: str) -> list[dict]:
        async with self.pools.tx(check_tenant_id(tenant), readonly=True) as conn:
            return [_row(r) for r in await conn.fetch(
                "SELECT * FROM vigil_decisions WHERE task_id = $1 ORDER BY time", task_id)]

    async def get(self, tenant: str, decision_id: str, *, reveal_quote: bool = True) -> dict:
        async with self.pools.tx(check_tenant_id(tenant), readonly=True) as conn:
            row = await fetch(conn, decision_id)
        if row is None:
            raise NotFoundError("no such decision", code="decision_not_found")
        return await self._quote(tenant, row, reveal_quote)

    async def since(self, tenant: str, when: datetime, *, limit: int = SINCE_LIMIT,
                    reveal_quote: bool = False) -> list[dict]:
        async with self.pools.tx(check_tenant_id(tenant), readonly=True) as conn:
            rows = [_row(r) for r in await conn.fetch(
                "SELECT * FROM vigil_decisions WHERE time >= $1 ORDER BY time, id LIMIT $2", when, limit)]
        return [await self._quote(tenant, r, reveal_quote) for r in rows]

    async def by_run(self, tenant: str, run: str) -> list[dict]:
        """Every decision of one batch run (quotes not revealed), oldest first."""
        async with self.pools.tx(check_tenant_id(tenant), readonly=True) as conn:
            rows = [_row(r) for r in await conn.fetch(
                "SELECT * FROM vigil_decisions WHERE run = $1 ORDER BY time, id", run)]
        return [await self._quote(tenant, r, False) for r in rows]

    async def _quote(self, tenant: str, row: dict, reveal: bool) -> dict:
        blob = row.pop("quote", None)
        row["quote"] = None
        if reveal and blob is not None and self.keyring is not None:
            row["quote"] = (await self.keyring.decrypt(tenant, bytes(blob), QUOTE_PURPOSE)).decode("utf-8")
        return row


async def ensure_schema(pool) -> None:
    """Migrate on an admin pool (with the crypto tables the quotes need)."""
    from services.core import crypto
    from services.core.db import ensure_schema as migrate

    await migrate(pool, crypto.SCHEMA_MODULE, crypto.SCHEMA_STEPS)
    await migrate(pool, SCHEMA_MODULE, SCHEMA_STEPS)
