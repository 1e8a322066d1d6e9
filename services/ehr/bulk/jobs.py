"""Durable ``$export`` jobs (PostgreSQL ``ehr_export_jobs``), one row per kick-off.

A job records what was asked (level, group members, types, ``_since``, the kick-off URL), who
asked (the SMART client: only it may poll, download or cancel), its ``transaction_time`` (the
instant the export is a snapshot of) and, once planned, its files: per type, the first id of
each part (parts are runs of resources in id order), so a file is a pure function of the job
and is re-served byte for byte on every download. No resource is copied: files are streamed
from the version history as of ``transaction_time``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from services.core.tenantdb import setting_rls_sql

STEPS = [
    """
    CREATE TABLE IF NOT EXISTS ehr_export_jobs (
        tenant text NOT NULL,
        id text NOT NULL,
        client_id text NOT NULL,
        level text NOT NULL,
        group_id text,
        patients text[],
        types text[] NOT NULL,
        explicit_types boolean NOT NULL,
        since timestamptz,
        request text NOT NULL,
        transaction_time timestamptz NOT NULL,
        ready_at timestamptz NOT NULL,
        status text NOT NULL,
        progress text NOT NULL DEFAULT '',
        files jsonb NOT NULL DEFAULT '[]'::jsonb,
        error text,
        heartbeat timestamptz NOT NULL DEFAULT now(),
        created_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (tenant, id)
    );
    CREATE INDEX IF NOT EXISTS ehr_export_jobs_active ON ehr_export_jobs (tenant) WHERE status = 'in-progress';
    """,
    setting_rls_sql("ehr_export_jobs", "vigil_ehr"),
]

#: in-progress -> complete | error | cancelled
STATUSES = ("in-progress", "complete", "error", "cancelled")
_COLUMNS = ("id, client_id, level, group_id, patients, types, explicit_types, since, request, transaction_time, "
            "ready_at, status, progress, files, error, heartbeat")


@dataclass
class Job:
    id: str
    client_id: str
    level: str  # system | patient | group
    group_id: str | None
    patients: list[str] | None  # Patient ids (group level); None: every patient
    types: list[str]
    explicit_types: bool
    since: datetime | None
    request: str
    transaction_time: datetime
    ready_at: datetime
    status: str
    progress: str
    files: list[dict]  # [{"type", "starts": [first id of each part], "counts": [...]}]
    error: str | None
    heartbeat: datetime


def _job(row: asyncpg.Record) -> Job:
    files = row["files"]
    return Job(row["id"], row["client_id"], row["level"], row["group_id"],
               list(row["patients"]) if row["patients"] is not None else None, list(row["types"]),
               row["explicit_types"], row["since"], row["request"], row["transaction_time"], row["ready_at"],
               row["status"], row["progress"], json.loads(files) if isinstance(files, str) else files, row["error"],
               row["heartbeat"])


async def insert(conn: asyncpg.Connection, tenant: str, job: Job) -> None:
    await conn.execute(
        "INSERT INTO ehr_export_jobs (tenant, id, client_id, level, group_id, patients, types, explicit_types, since, "
        "request, transaction_time, ready_at, status, progress) "
        "VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14)",
        tenant, job.id, job.client_id, job.level, job.group_id, job.patients, job.types, job.explicit_types,
        job.since, job.request, job.transaction_time, job.ready_at, job.status, job.progress)


async def get(conn: asyncpg.Connection, tenant: str, job_id: str) -> Job | None:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM ehr_export_jobs WHERE tenant=$1 AND id=$2", tenant, job_id)
    return _job(row) if row else None


async def active_count(conn: asyncpg.Connection, tenant: str) -> int:
    return await conn.fetchval("SELECT count(*) FROM ehr_export_jobs WHERE tenant=$1 AND status='in-progress'", tenant)


async def record_progress(conn: asyncpg.Connection, tenant: str, job_id: str, files: list[dict], progress: str) -> bool:
    """Store the files planned so far; False when the job is no longer in progress (cancelled)."""
    done = await conn.fetchval(
        "UPDATE ehr_export_jobs SET files=$3, progress=$4, heartbeat=now() "
        "WHERE tenant=$1 AND id=$2 AND status='in-progress' RETURNING 1", tenant, job_id, files, progress)
    return done is not None


async def finish(conn: asyncpg.Connection, tenant: str, job_id: str, status: str, error: str | None = None) -> bool:
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}")
    done = await conn.fetchval(
        "UPDATE ehr_export_jobs SET status=$3, error=$4, heartbeat=now() "
        "WHERE tenant=$1 AND id=$2 AND status='in-progress' RETURNING 1", tenant, job_id, status, error)
    return done is not None


async def cancel(conn: asyncpg.Connection, tenant: str, job_id: str) -> bool:
    done = await conn.fetchval(
        "UPDATE ehr_export_jobs SET status='cancelled', heartbeat=now() "
        "WHERE tenant=$1 AND id=$2 AND status <> 'cancelled' RETURNING 1", tenant, job_id)
    return done is not None


async def claim_stale(conn: asyncpg.Connection, tenant: str, job_id: str, stale_s: float) -> bool:
    """Take over an in-progress job whose planner stopped beating (the server restarted)."""
    done = await conn.fetchval(
        "UPDATE ehr_export_jobs SET heartbeat=now() WHERE tenant=$1 AND id=$2 AND status='in-progress' "
        "AND heartbeat < now() - make_interval(secs => $3) RETURNING 1", tenant, job_id, float(stale_s))
    return done is not None
