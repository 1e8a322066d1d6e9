"""The cards' read model: ``cdshooks_findings``, written only by cdshooks, from the events triage,
writeback, ingest and cdshooks itself publish (never from triage's decision ledger).

Two stages of the cdshooks process (``app.specs``), each with its own consumer group:

- ``cdshooks-actions`` on ``actions``: ``vigil.triage.decision`` -> the finding (category, grade,
  kind, engine version, decision time, episode key, the quote encrypted at rest as the ledger
  keeps it).
- ``cdshooks-feedback`` on ``feedback``: ``vigil.writeback.task-written`` -> its Task (the Task of
  the read-back refs); ``vigil.ehr.task-updated`` -> the clinician's action on
  every decision the Task carries (the event's ``decisions``) and on every finding of that Task
  without an action yet; ``vigil.cdshooks.feedback`` -> the action on the card's decisions. The
  action means what it means to triage's ledger (``services.core.clinician``).

Only decisions that can become a result are kept: a result kind (``RESULT_KINDS``) that the mode
let through (``write``). A suppressed decision (kill switch) is never emitted, so it never arrives.

Every write is an idempotent upsert keyed by (tenant, decision id), so an event seen twice
changes nothing and the order of arrival does not matter:

- a decision fills its row once (a redelivered decision finds it filled and leaves it, sealed
  quote included);
- task-written and clinician actions that arrive before their decision (the ``feedback`` stream
  is not ordered with ``actions``; on ``feedback`` a Task's task-written precedes the answers to
  it, both keyed by patient, but nothing relies on it) create the row without the decision's
  fields; the row becomes a card once its decision arrives;
- the first clinician action on a decision stays (as in the ledger's per-Task path); a replayed
  or later answer does not change it.

Open findings (``OPEN_SQL``, per patient): decided, with a Task, no clinician action. Open
episodes of a tenant without FHIR results (``OPEN_NO_TASK_SQL``): decided, no clinician action.
"""
from __future__ import annotations

from datetime import datetime

from prometheus_client import Counter

from services.core import clinician, contracts, evidence, vigiltasks
from services.core.bus import Context
from services.core.crypto import Keyring
from services.core.events import Event
from services.core.tenantdb import TenantPools, tenant_rls_sql

TABLE = "cdshooks_findings"
SCHEMA_MODULE = "cdshooks.findings"
SCHEMA_STEPS = [
    """
CREATE TABLE IF NOT EXISTS cdshooks_findings (
    tenant text NOT NULL,
    decision_id text NOT NULL,
    patient text NOT NULL,
    category text,
    grade integer,
    kind text,
    engine_version text,
    time timestamptz,
    quote bytea,
    episode_key text,
    task_id text,
    clinician_action text CHECK (clinician_action IS NULL OR clinician_action IN ('accepted', 'overridden')),
    action_time timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, decision_id)
);
CREATE INDEX IF NOT EXISTS cdshooks_findings_open ON cdshooks_findings (tenant, patient)
    WHERE clinician_action IS NULL AND kind IS NOT NULL;
CREATE INDEX IF NOT EXISTS cdshooks_findings_task ON cdshooks_findings (tenant, task_id) WHERE task_id IS NOT NULL;
""",
    tenant_rls_sql("cdshooks_findings", ("SELECT", "INSERT", "UPDATE")),
]

#: Decisions that become a result (the kinds writeback and hl7out deliver).
RESULT_KINDS = ("urgent-task", "routine-task", "review-task")
#: Quotes at rest are sealed as in triage's ledger (AES-GCM under the tenant key).
QUOTE_PURPOSE = evidence.LEDGER_PURPOSE

OPEN_SQL = """
SELECT decision_id AS id, task_id, category, grade, kind, engine_version, time, quote
FROM cdshooks_findings
WHERE patient = $1 AND kind IS NOT NULL AND task_id IS NOT NULL AND clinician_action IS NULL
ORDER BY time, decision_id
"""
OPEN_NO_TASK_SQL = """
SELECT decision_id AS id, coalesce(episode_key, decision_id) AS card_key, category, grade, kind, engine_version,
       time, quote
FROM cdshooks_findings
WHERE patient = $1 AND kind IS NOT NULL AND clinician_action IS NULL
ORDER BY time, decision_id
"""

_DECIDED = """
INSERT INTO cdshooks_findings (tenant, decision_id, patient, category, grade, kind, engine_version, time, quote,
                               episode_key)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (tenant, decision_id) DO UPDATE SET
    patient = EXCLUDED.patient, category = EXCLUDED.category, grade = EXCLUDED.grade, kind = EXCLUDED.kind,
    engine_version = EXCLUDED.engine_version, time = EXCLUDED.time, quote = EXCLUDED.quote,
    episode_key = EXCLUDED.episode_key, updated_at = now()
WHERE cdshooks_findings.kind IS NULL
RETURNING 1
"""
_WRITTEN = """
INSERT INTO cdshooks_findings (tenant, decision_id, patient, task_id) VALUES ($1, $2, $3, $4)
ON CONFLICT (tenant, decision_id) DO UPDATE SET task_id = EXCLUDED.task_id, updated_at = now()
WHERE cdshooks_findings.task_id IS DISTINCT FROM EXCLUDED.task_id
RETURNING 1
"""
_ACTED = """
INSERT INTO cdshooks_findings (tenant, decision_id, patient, task_id, clinician_action, action_time)
SELECT $1, d, $3, $4, $5, $6 FROM unnest($2::text[]) AS d
ON CONFLICT (tenant, decision_id) DO UPDATE SET
    clinician_action = EXCLUDED.clinician_action, action_time = EXCLUDED.action_time,
    task_id = coalesce(cdshooks_findings.task_id, EXCLUDED.task_id), updated_at = now()
WHERE cdshooks_findings.clinician_action IS NULL
RETURNING decision_id
"""
_TASK_ACTED = """
UPDATE cdshooks_findings SET clinician_action = $2, action_time = $3, updated_at = now()
WHERE task_id = $1 AND clinician_action IS NULL
RETURNING decision_id
"""

UPDATES = Counter("vigil_cdshooks_projection_updates_total", "Rows of the cards' read model changed by an event",
                  ("tenant", "what"))


def _time(raw: str) -> datetime:
    return datetime.fromisoformat(raw.replace("Z", "+00:00"))


class Actions:
    """``cdshooks-actions``: decisions."""

    TYPES = frozenset({contracts.TRIAGE_DECISION})

    def __init__(self, pools: TenantPools, keyring: Keyring):
        self.pools, self.keyring = pools, keyring

    async def __call__(self, event: Event, ctx: Context) -> None:
        if event.type in self.TYPES:
            await self._decided(event, ctx)

    async def _decided(self, event: Event, ctx: Context) -> None:
        d = event.data
        if d["kind"] not in RESULT_KINDS or not d.get("write", d["mode"] != "silent"):
            return  # never a card: not a result, or the mode kept it from the clinician
        async with self.pools.tx(ctx.tenant) as conn:
            if await conn.fetchval("SELECT kind IS NOT NULL FROM cdshooks_findings WHERE decision_id = $1",
                                   d["decisionId"]):
                return  # seen already: nothing to seal again
            opened = await evidence.open_decision(self.keyring, ctx.tenant, d)
            quote = (opened.get("finding") or {}).get("quote")
            blob = await self.keyring.encrypt(ctx.tenant, quote.encode("utf-8"), QUOTE_PURPOSE) if quote else None
            changed = await conn.fetchval(
                _DECIDED, ctx.tenant, d["decisionId"], d["patient"], d["category"], d.get("grade"), d["kind"],
                d.get("engineVersion"), event.time, blob, d.get("episodeKey"))
        if changed:
            UPDATES.labels(ctx.tenant, "decided").inc()


class Feedback:
    """``cdshooks-feedback``: the Tasks writeback wrote, and clinicians' answers, from the inbox (a
    Task's status) or a card."""

    def __init__(self, pools: TenantPools):
        self.pools = pools

    async def __call__(self, event: Event, ctx: Context) -> None:
        handler = self.HANDLERS.get(event.type)
        if handler is not None:
            await handler(self, event, ctx)

    async def _task_updated(self, event: Event, ctx: Context) -> None:
        d = event.data
        action = clinician.task_action(d["status"])
        if action is None:
            return  # not a clinician's answer (e.g. Vigil's own update of the Task)
        await self._acted(ctx, d.get("decisions") or [], d["patient"], d["task"]["id"], action,
                          _time(d["lastUpdated"]), whole_task=True)

    async def _card_answered(self, event: Event, ctx: Context) -> None:
        d = event.data
        await self._acted(ctx, d["decisions"], d["patient"], d.get("task"), d["outcome"], _time(d["time"]),
                          whole_task=False)

    async def _written(self, event: Event, ctx: Context) -> None:
        d = event.data
        task = vigiltasks.task_id_of(d["refs"])
        if task is None:
            ctx.log.warning("cdshooks.written_without_task", refs=len(d["refs"]))
            return
        async with self.pools.tx(ctx.tenant) as conn:
            changed = await conn.fetchval(_WRITTEN, ctx.tenant, d["decisionId"], d["patient"], task)
        if changed:
            UPDATES.labels(ctx.tenant, "written").inc()

    async def _acted(self, ctx: Context, decisions: list[str], patient: str, task: str | None, action: str,
                     when: datetime, *, whole_task: bool) -> None:
        async with self.pools.tx(ctx.tenant) as conn:
            done = {r["decision_id"] for r in await conn.fetch(_ACTED, ctx.tenant, list(decisions), patient, task,
                                                               action, when)}
            if whole_task and task is not None:
                done |= {r["decision_id"] for r in await conn.fetch(_TASK_ACTED, task, action, when)}
        if done:
            UPDATES.labels(ctx.tenant, "acted").inc(len(done))
        ctx.log.info("cdshooks.feedback_projected", action=action, decisions=len(done))

    #: event type -> handler: the stage's one table (``TYPES``, what the runtime lets through, is its keys).
    HANDLERS = {contracts.TASK_WRITTEN: _written, contracts.TASK_UPDATED: _task_updated,
                contracts.CDS_FEEDBACK: _card_answered}
    TYPES = frozenset(HANDLERS)


async def ensure_schema(pool) -> None:
    """Migrate on an admin pool (with the crypto tables the sealed quotes need)."""
    from services.core import crypto
    from services.core.db import ensure_schema as migrate

    await migrate(pool, crypto.SCHEMA_MODULE, crypto.SCHEMA_STEPS)
    await migrate(pool, SCHEMA_MODULE, SCHEMA_STEPS)
