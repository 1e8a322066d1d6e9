"""Ingest tables (numbered steps for ``services.core.db.ensure_schema``; add steps, never edit).

ingest_hl7_messages     the HL7 receipt log: dedupe key (facility, control id, event, body digest)
ingest_hl7_rejects      refused HL7 messages, encrypted, with the error code (for repair + replay)
ingest_seen_versions    (resource type, id, versionId) already published, whatever the origin
ingest_subscription_events  (subscription, eventNumber) already handled
ingest_subscriptions    per subscription: highest contiguous event number, lastUpdated checkpoint,
                        last heartbeat / notification time, last known status
ingest_backfill         per backfill job: since, cursor (lastUpdated, id), counts, done
ingest_documents        Vigil's document store: notes that did not come from the EHR's FHIR API
                        (HL7 now), one row per version, text sealed with the tenant key ("note-text")
ingest_patients         the patient index HL7 keeps current: patient key (keyed hash of PID-3), the
                        EHR's Patient id once resolved, the identifiers sealed ("patient-index")
ingest_batch_jobs       per named batch run (``services.ingest.batch.job``): source kind and PHI-free
                        name, the last stored position (committed with the notes it covers), counts
                        (seen, stored, published, skipped, no-text), total when known, state, times
ingest_batch_progress   one row per committed chunk of a run: when, notes seen so far (rate over time)

Per-patient polling has its own migration module (``POLL_MODULE``, applied by :func:`migrate`):
ingest_poll_patients    the watch list: one row per watched Patient id, where it came from, until when
                        it is watched, its cursor (lastUpdated, id of the newest note seen) and the
                        outcome of its last poll (an error code, never a message)
ingest_poll_tenants     per tenant: the last round (start, end, counts), the last watch-list refresh
                        and the last upload's counts

Since AA is given on durable receipt, ``ingest_hl7_messages.raw`` is no longer written: the raw
message lives on ``vigil.<tenant>.hl7-inbound`` (sealed). The column stays for older rows.
"""
from __future__ import annotations

import asyncpg

from services.core.db import ensure_schema
from services.core.tenantdb import tenant_rls_sql

MODULE = "ingest"

STEPS = [
    """
CREATE TABLE IF NOT EXISTS ingest_hl7_messages (
    tenant text NOT NULL,
    facility text NOT NULL,
    control_id text NOT NULL,
    event text NOT NULL,
    body_sha256 text NOT NULL,
    raw bytea NOT NULL,
    resources jsonb NOT NULL DEFAULT '[]'::jsonb,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, facility, control_id, event)
);
CREATE TABLE IF NOT EXISTS ingest_hl7_rejects (
    tenant text NOT NULL,
    id bigserial,
    control_id text NOT NULL,
    ack_code text NOT NULL,
    error_code text NOT NULL,
    raw bytea NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, id)
);
CREATE TABLE IF NOT EXISTS ingest_seen_versions (
    tenant text NOT NULL,
    resource_type text NOT NULL,
    resource_id text NOT NULL,
    version_id text NOT NULL,
    origin text NOT NULL,
    seen_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, resource_type, resource_id, version_id)
);
CREATE TABLE IF NOT EXISTS ingest_subscription_events (
    tenant text NOT NULL,
    subscription text NOT NULL,
    event_number bigint NOT NULL,
    seen_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, subscription, event_number)
);
CREATE TABLE IF NOT EXISTS ingest_subscriptions (
    tenant text NOT NULL,
    subscription text NOT NULL,
    topic text NOT NULL DEFAULT '',
    last_event_number bigint NOT NULL DEFAULT 0,
    checkpoint timestamptz,
    last_heartbeat timestamptz,
    last_notification timestamptz,
    status text NOT NULL DEFAULT 'unknown',
    PRIMARY KEY (tenant, subscription)
);
CREATE TABLE IF NOT EXISTS ingest_backfill (
    tenant text NOT NULL,
    job text NOT NULL,
    since timestamptz NOT NULL,
    cursor_updated timestamptz,
    cursor_id text,
    seen bigint NOT NULL DEFAULT 0,
    published bigint NOT NULL DEFAULT 0,
    done boolean NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, job)
);
""",
    tenant_rls_sql("ingest_hl7_messages", ("SELECT", "INSERT", "UPDATE")),
    tenant_rls_sql("ingest_hl7_rejects", ("SELECT", "INSERT")),
    tenant_rls_sql("ingest_seen_versions", ("SELECT", "INSERT")),
    tenant_rls_sql("ingest_subscription_events", ("SELECT", "INSERT")),
    tenant_rls_sql("ingest_subscriptions", ("SELECT", "INSERT", "UPDATE")),
    tenant_rls_sql("ingest_backfill", ("SELECT", "INSERT", "UPDATE")),
    "GRANT USAGE ON SEQUENCE ingest_hl7_rejects_id_seq TO vigil_app;",
    """
ALTER TABLE ingest_hl7_messages ALTER COLUMN raw DROP NOT NULL;
ALTER TABLE ingest_hl7_messages DROP CONSTRAINT IF EXISTS ingest_hl7_messages_pkey;
ALTER TABLE ingest_hl7_messages ADD PRIMARY KEY (tenant, facility, control_id, event, body_sha256);
CREATE TABLE IF NOT EXISTS ingest_documents (
    tenant text NOT NULL,
    id text NOT NULL,
    version integer NOT NULL CHECK (version > 0),
    identifier_system text NOT NULL,
    identifier_value text NOT NULL,
    facility text NOT NULL,
    control_id text NOT NULL,
    patient_key text NOT NULL,
    patient_id text,
    note_time timestamptz,
    note_type text NOT NULL DEFAULT '',
    note_type_display text NOT NULL DEFAULT '',
    doc_status text,
    status text NOT NULL CHECK (status IN ('text', 'no-text')),
    content_types text[] NOT NULL DEFAULT '{}',
    text_sealed bytea,
    body_sha256 text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, id, version)
);
CREATE UNIQUE INDEX IF NOT EXISTS ingest_documents_content ON ingest_documents (tenant, id, body_sha256);
CREATE TABLE IF NOT EXISTS ingest_patients (
    tenant text NOT NULL,
    patient_key text NOT NULL,
    patient_id text,
    identifiers_sealed bytea NOT NULL,
    last_event text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, patient_key)
);
""",
    tenant_rls_sql("ingest_documents", ("SELECT", "INSERT")),
    tenant_rls_sql("ingest_patients", ("SELECT", "INSERT", "UPDATE")),
    """
CREATE TABLE IF NOT EXISTS ingest_batch_jobs (
    tenant text NOT NULL,
    name text NOT NULL,
    source_kind text NOT NULL,
    source_name text NOT NULL,
    position text,
    total bigint,
    seen bigint NOT NULL DEFAULT 0,
    stored bigint NOT NULL DEFAULT 0,
    published bigint NOT NULL DEFAULT 0,
    skipped bigint NOT NULL DEFAULT 0,
    no_text bigint NOT NULL DEFAULT 0,
    state text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'done', 'failed')),
    error text,
    started_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    PRIMARY KEY (tenant, name)
);
CREATE TABLE IF NOT EXISTS ingest_batch_progress (
    tenant text NOT NULL,
    name text NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    seen bigint NOT NULL,
    PRIMARY KEY (tenant, name, at)
);
""",
    tenant_rls_sql("ingest_batch_jobs", ("SELECT", "INSERT", "UPDATE")),
    tenant_rls_sql("ingest_batch_progress", ("SELECT", "INSERT")),
]


POLL_MODULE = "ingest_poll"

POLL_STEPS = [
    """
CREATE TABLE IF NOT EXISTS ingest_poll_patients (
    tenant text NOT NULL,
    patient_id text NOT NULL,
    source text NOT NULL CHECK (source IN ('checkpoint-inhibitors', 'uploaded')),
    added_at timestamptz NOT NULL DEFAULT now(),
    watch_until timestamptz,
    cursor_updated timestamptz,
    cursor_id text NOT NULL DEFAULT '',
    last_polled timestamptz,
    last_ok timestamptz,
    last_error text,
    consecutive_errors integer NOT NULL DEFAULT 0,
    polls bigint NOT NULL DEFAULT 0,
    notes bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, patient_id)
);
CREATE TABLE IF NOT EXISTS ingest_poll_tenants (
    tenant text PRIMARY KEY,
    round_started timestamptz,
    round_finished timestamptz,
    round_patients integer NOT NULL DEFAULT 0,
    round_requests integer NOT NULL DEFAULT 0,
    round_notes integer NOT NULL DEFAULT 0,
    round_errors integer NOT NULL DEFAULT 0,
    rounds bigint NOT NULL DEFAULT 0,
    watch_refreshed timestamptz,
    watch_refresh_error text,
    upload_at timestamptz,
    upload_entries integer NOT NULL DEFAULT 0,
    upload_unresolved integer NOT NULL DEFAULT 0
);
""",
    tenant_rls_sql("ingest_poll_patients", ("SELECT", "INSERT", "UPDATE", "DELETE")),
    tenant_rls_sql("ingest_poll_tenants", ("SELECT", "INSERT", "UPDATE")),
]


async def migrate(admin_pool: asyncpg.Pool) -> int:
    """Apply pending steps with the platform (admin) connection; returns how many ran."""
    return (await ensure_schema(admin_pool, MODULE, STEPS)
            + await ensure_schema(admin_pool, POLL_MODULE, POLL_STEPS))
