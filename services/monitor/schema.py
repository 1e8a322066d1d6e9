"""The monitor's tables (tenant row-level security; written and read through ``TenantPools``).

- ``monitor_events``: one row per event the monitor counted, keyed by (tenant, CloudEvents id):
  the exactly-once guard (an event id already here is a redelivery and changes nothing) and the
  rows every report figure is computed from (type, event time, note document, decision id,
  Task id, category, model version, kind, number of findings).
- ``monitor_windows``: one row per (tenant, window size, window start, metric, category, model
  version); the value is incremented in the transaction that records the event in
  ``monitor_events``, so a redelivery or a monitor restart never counts an event twice.
- ``monitor_tasks``: one row per inbox Task Vigil created: category, model version, kind, note
  time, written time, time-to-alert, the first clinician action (accepted | overridden, reason
  code, time), and when it was counted as ignored.
- ``monitor_alerts``: drift, gold-F1 and override-rate alerts (id deterministic per check and
  period, so a repeated check does not repeat the alert).
- ``monitor_gold_scores``: daily gold-set re-scores with the tenant's live engine.
- ``monitor_gate_decisions``: every `vigil gate` evaluation, passed or not, with its checks.
"""
from __future__ import annotations

from services.core import audit
from services.core.db import ensure_schema as migrate
from services.core.tenantdb import tenant_rls_sql

SCHEMA_MODULE = "monitor"
SCHEMA_STEPS = [
    """
CREATE TABLE IF NOT EXISTS monitor_windows (
    tenant text NOT NULL,
    window_s integer NOT NULL,
    window_start timestamptz NOT NULL,
    metric text NOT NULL,
    category text NOT NULL,
    version text NOT NULL,
    value double precision NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, window_s, window_start, metric, category, version)
);
CREATE TABLE IF NOT EXISTS monitor_tasks (
    tenant text NOT NULL,
    task_id text NOT NULL,
    decision_id text,
    category text NOT NULL,
    version text NOT NULL,
    kind text,
    note_time timestamptz,
    written_time timestamptz,
    tta_seconds double precision,
    action text CHECK (action IS NULL OR action IN ('accepted', 'overridden')),
    reason text,
    action_time timestamptz,
    ignored_at timestamptz,
    PRIMARY KEY (tenant, task_id)
);
CREATE TABLE IF NOT EXISTS monitor_alerts (
    tenant text NOT NULL,
    id text NOT NULL,
    time timestamptz NOT NULL DEFAULT now(),
    kind text NOT NULL,
    dimension text NOT NULL,
    value double precision NOT NULL,
    threshold double precision NOT NULL,
    period_end timestamptz,
    details jsonb NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (tenant, id)
);
CREATE TABLE IF NOT EXISTS monitor_gold_scores (
    tenant text NOT NULL,
    id text NOT NULL,
    time timestamptz NOT NULL DEFAULT now(),
    engine text NOT NULL,
    engine_version text NOT NULL,
    gold text NOT NULL,
    n_notes integer NOT NULL,
    f1 double precision NOT NULL,
    precision double precision NOT NULL,
    recall double precision NOT NULL,
    f1_lower double precision NOT NULL,
    precision_lower double precision NOT NULL,
    gates_passed boolean NOT NULL,
    PRIMARY KEY (tenant, id)
);
CREATE TABLE IF NOT EXISTS monitor_gate_decisions (
    tenant text NOT NULL,
    id text NOT NULL,
    time timestamptz NOT NULL DEFAULT now(),
    from_mode text NOT NULL,
    to_mode text NOT NULL,
    passed boolean NOT NULL,
    checks jsonb NOT NULL,
    actor text NOT NULL,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX IF NOT EXISTS monitor_windows_metric ON monitor_windows (tenant, metric, window_start);
CREATE INDEX IF NOT EXISTS monitor_gate_latest ON monitor_gate_decisions (tenant, to_mode, time);
""",
    tenant_rls_sql("monitor_windows", ("SELECT", "INSERT", "UPDATE")),
    tenant_rls_sql("monitor_tasks", ("SELECT", "INSERT", "UPDATE")),
    tenant_rls_sql("monitor_alerts", ("SELECT", "INSERT")),
    tenant_rls_sql("monitor_gold_scores", ("SELECT", "INSERT")),
    tenant_rls_sql("monitor_gate_decisions", ("SELECT", "INSERT")),
    """
CREATE TABLE IF NOT EXISTS monitor_events (
    tenant text NOT NULL,
    event_id text NOT NULL,
    type text NOT NULL,
    time timestamptz NOT NULL,
    document text,
    decision_id text,
    task_id text,
    category text,
    version text,
    kind text,
    findings integer,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, event_id)
);
CREATE INDEX IF NOT EXISTS monitor_events_time ON monitor_events (tenant, type, time);
CREATE INDEX IF NOT EXISTS monitor_events_decision ON monitor_events (tenant, decision_id)
    WHERE decision_id IS NOT NULL;
""",
    tenant_rls_sql("monitor_events", ("SELECT", "INSERT")),
]


async def ensure_schema(admin_pool) -> None:
    """Migrate with the platform (admin) pool: the audit log the gates append to, then ours (the
    label store included, ``labels``)."""
    from services.monitor import labels

    await migrate(admin_pool, audit.SCHEMA_MODULE, audit.SCHEMA_STEPS)
    await migrate(admin_pool, SCHEMA_MODULE, SCHEMA_STEPS)
    await migrate(admin_pool, labels.SCHEMA_MODULE, labels.SCHEMA_STEPS)
