"""The label store: what clinicians said about Vigil's findings (accepted / overridden, why).

Owned by the monitor, which alone migrates and writes it: its stream processor turns the
``feedback`` stream's events into labels (``feedback``: ``vigil.ehr.task-updated`` from the
inbox, ``vigil.cdshooks.feedback`` from CDS Hooks cards). Read by evaluation and monitoring. Table ``vigil_labels`` (tenant RLS through
``TenantPools``), one row per clinician action, keyed by (tenant, id) where the id is
deterministic in its source (``task:<id>/<version>`` or ``cds:<feedback id>``), so a
redelivered action stores nothing twice.

    await insert(conn, tenant, Label(id=..., action="overridden", reason="not-irae", ...))  # in your tx; True if new
    store = LabelStore(pools)
    rows = await store.for_decision(tenant, decision_id)

No note text or quote is stored here: reason is a short code, ``comment`` at most
``MAX_COMMENT`` characters of the clinician's own words (it stays in the tenant's database).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

from services.core.errors import ValidationError
from services.core.tenancy import check_tenant_id
from services.core.tenantdb import TenantPools, tenant_rls_sql

ACTIONS = ("accepted", "overridden")
SOURCES = ("ehr-task", "cds-hooks")
MAX_COMMENT = 500

#: The migration steps keep the name they were first applied under (the table moved here from core).
SCHEMA_MODULE = "core.labels"
SCHEMA_STEPS = [
    """
CREATE TABLE IF NOT EXISTS vigil_labels (
    tenant text NOT NULL,
    id text NOT NULL,
    time timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    source text NOT NULL CHECK (source IN ('ehr-task', 'cds-hooks')),
    action text NOT NULL CHECK (action IN ('accepted', 'overridden')),
    reason text,
    comment text,
    clinician text,
    patient text,
    decision_id text,
    task_id text,
    task_version text,
    category text,
    grade integer,
    model_version text,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX IF NOT EXISTS vigil_labels_decision ON vigil_labels (tenant, decision_id);
CREATE INDEX IF NOT EXISTS vigil_labels_time ON vigil_labels (tenant, time);
""",
    tenant_rls_sql("vigil_labels", ("SELECT", "INSERT")),
]


@dataclass
class Label:
    id: str
    source: str
    action: str
    reason: str | None = None
    comment: str | None = None
    clinician: str | None = None
    patient: str | None = None
    decision_id: str | None = None
    task_id: str | None = None
    task_version: str | None = None
    category: str | None = None
    grade: int | None = None
    model_version: str | None = None
    time: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValidationError(f"action {self.action!r} is not one of {', '.join(ACTIONS)}", code="bad_action")
        if self.source not in SOURCES:
            raise ValidationError(f"source {self.source!r} is not one of {', '.join(SOURCES)}", code="bad_source")
        if self.comment is not None:
            self.comment = self.comment[:MAX_COMMENT]


_COLUMNS = tuple(Label.__dataclass_fields__)


async def insert(conn, tenant: str, label: Label) -> bool:
    """Store one label in the caller's tenant transaction; False when that id was stored before."""
    values = asdict(label)
    got = await conn.fetchval(
        f"INSERT INTO vigil_labels (tenant, {', '.join(_COLUMNS)}) VALUES ($1, "
        f"{', '.join(f'${i}' for i in range(2, len(_COLUMNS) + 2))}) ON CONFLICT (tenant, id) DO NOTHING "
        "RETURNING 1", tenant, *(values[c] for c in _COLUMNS))
    return got == 1


class LabelStore:
    """Reads of the label store."""

    def __init__(self, pools: TenantPools):
        self.pools = pools

    async def for_decision(self, tenant: str, decision_id: str) -> list[dict]:
        async with self.pools.tx(check_tenant_id(tenant), readonly=True) as conn:
            return [dict(r) for r in await conn.fetch(
                "SELECT * FROM vigil_labels WHERE decision_id = $1 ORDER BY time", decision_id)]

    async def for_task(self, tenant: str, task_id: str) -> list[dict]:
        async with self.pools.tx(check_tenant_id(tenant), readonly=True) as conn:
            return [dict(r) for r in await conn.fetch(
                "SELECT * FROM vigil_labels WHERE task_id = $1 ORDER BY time", task_id)]

    async def since(self, tenant: str, when: datetime) -> list[dict]:
        async with self.pools.tx(check_tenant_id(tenant), readonly=True) as conn:
            return [dict(r) for r in await conn.fetch(
                "SELECT * FROM vigil_labels WHERE time >= $1 ORDER BY time, id", when)]


async def ensure_schema(pool) -> None:
    from services.core.db import ensure_schema as migrate

    await migrate(pool, SCHEMA_MODULE, SCHEMA_STEPS)
