"""The polling watch list and its per-patient cursors (``ingest_poll_patients``, ``ingest_poll_tenants``).

A patient is watched while ``watch_until`` is NULL (an uploaded list: until the next upload drops it)
or in the future (the checkpoint-inhibitor list: for ``keep`` after its last active order was seen).
A patient no longer watched keeps its row and cursor, so watching it again resumes where it stopped.
The cursor is the (lastUpdated, id) of the newest note seen; NULL until the first successful poll.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Iterable

import asyncpg

SOURCES = ("checkpoint-inhibitors", "uploaded")
_WATCHED = "(watch_until IS NULL OR watch_until > now())"


@dataclass(frozen=True)
class Watched:
    patient_id: str
    added_at: datetime
    cursor_updated: datetime | None
    cursor_id: str


async def list_patients(conn: asyncpg.Connection, tenant: str, patient_ids: Iterable[str], keep: timedelta) -> int:
    """The checkpoint-inhibitor refresh: each listed patient is watched for ``keep`` from now."""
    ids = sorted(set(patient_ids))
    await conn.execute(
        "INSERT INTO ingest_poll_patients (tenant, patient_id, source, watch_until) "
        "SELECT $1, p, 'checkpoint-inhibitors', now() + $3::interval FROM unnest($2::text[]) AS p "
        "ON CONFLICT (tenant, patient_id) DO UPDATE SET source = 'checkpoint-inhibitors', "
        "watch_until = CASE WHEN ingest_poll_patients.watch_until IS NULL THEN NULL "
        "                   ELSE greatest(ingest_poll_patients.watch_until, EXCLUDED.watch_until) END",
        tenant, ids, keep)
    return len(ids)


async def replace_uploaded(conn: asyncpg.Connection, tenant: str, patient_ids: Iterable[str], *,
                           append: bool = False) -> dict[str, int]:
    """An uploaded list: its patients are watched with no end; without ``append``, uploaded patients
    missing from it stop being watched (their cursors stay). Returns added / kept / dropped counts."""
    ids = sorted(set(patient_ids))
    before = {r["patient_id"] for r in await conn.fetch(
        f"SELECT patient_id FROM ingest_poll_patients WHERE tenant = $1 AND source = 'uploaded' AND {_WATCHED}",
        tenant)}
    await conn.execute(
        "INSERT INTO ingest_poll_patients (tenant, patient_id, source, watch_until) "
        "SELECT $1, p, 'uploaded', NULL FROM unnest($2::text[]) AS p "
        "ON CONFLICT (tenant, patient_id) DO UPDATE SET source = 'uploaded', watch_until = NULL",
        tenant, ids)
    dropped = 0
    if not append:
        dropped = int((await conn.execute(
            f"UPDATE ingest_poll_patients SET watch_until = now() WHERE tenant = $1 AND source = 'uploaded' "
            f"AND {_WATCHED} AND NOT (patient_id = ANY($2::text[]))", tenant, ids)).split()[-1])
    return {"added": len(set(ids) - before), "kept": len(set(ids) & before), "dropped": dropped}


async def watched(conn: asyncpg.Connection, tenant: str) -> list[Watched]:
    rows = await conn.fetch(
        f"SELECT patient_id, added_at, cursor_updated, cursor_id FROM ingest_poll_patients "
        f"WHERE tenant = $1 AND {_WATCHED} ORDER BY patient_id", tenant)
    return [Watched(**dict(r)) for r in rows]


async def advance(conn: asyncpg.Connection, tenant: str, patient_id: str, cursor: tuple[datetime, str] | None,
                  notes: int) -> None:
    """A successful poll: the cursor moves forward (never back), the error streak ends."""
    updated, rid = cursor if cursor else (None, "")
    await conn.execute(
        "UPDATE ingest_poll_patients SET last_polled = now(), last_ok = now(), last_error = NULL, "
        "consecutive_errors = 0, polls = polls + 1, notes = notes + $5, "
        "cursor_id = CASE WHEN $3::timestamptz IS NOT NULL AND (cursor_updated IS NULL "
        "  OR ($3::timestamptz, $4::text) > (cursor_updated, cursor_id)) THEN $4 ELSE cursor_id END, "
        "cursor_updated = CASE WHEN $3::timestamptz IS NOT NULL AND (cursor_updated IS NULL "
        "  OR ($3::timestamptz, $4::text) > (cursor_updated, cursor_id)) THEN $3 ELSE cursor_updated END "
        "WHERE tenant = $1 AND patient_id = $2", tenant, patient_id, updated, rid, notes)


async def failed(conn: asyncpg.Connection, tenant: str, patient_id: str, error_code: str) -> None:
    await conn.execute(
        "UPDATE ingest_poll_patients SET last_polled = now(), last_error = $3, "
        "consecutive_errors = consecutive_errors + 1, polls = polls + 1 WHERE tenant = $1 AND patient_id = $2",
        tenant, patient_id, error_code[:80])


async def _tenant_row(conn: asyncpg.Connection, tenant: str) -> None:
    await conn.execute("INSERT INTO ingest_poll_tenants (tenant) VALUES ($1) ON CONFLICT DO NOTHING", tenant)


async def round_started(conn: asyncpg.Connection, tenant: str) -> None:
    await _tenant_row(conn, tenant)
    await conn.execute("UPDATE ingest_poll_tenants SET round_started = now() WHERE tenant = $1", tenant)


async def round_finished(conn: asyncpg.Connection, tenant: str, *, patients: int, requests: int, notes: int,
                         errors: int) -> None:
    await _tenant_row(conn, tenant)
    await conn.execute(
        "UPDATE ingest_poll_tenants SET round_finished = now(), round_patients = $2, round_requests = $3, "
        "round_notes = $4, round_errors = $5, rounds = rounds + 1 WHERE tenant = $1",
        tenant, patients, requests, notes, errors)


async def watch_refreshed(conn: asyncpg.Connection, tenant: str, error_code: str | None) -> None:
    await _tenant_row(conn, tenant)
    if error_code is None:
        await conn.execute("UPDATE ingest_poll_tenants SET watch_refreshed = now(), watch_refresh_error = NULL "
                           "WHERE tenant = $1", tenant)
    else:
        await conn.execute("UPDATE ingest_poll_tenants SET watch_refresh_error = $2 WHERE tenant = $1",
                           tenant, error_code[:80])


async def last_refresh(conn: asyncpg.Connection, tenant: str) -> datetime | None:
    return await conn.fetchval("SELECT watch_refreshed FROM ingest_poll_tenants WHERE tenant = $1", tenant)


async def uploaded(conn: asyncpg.Connection, tenant: str, *, entries: int, unresolved: int) -> None:
    await _tenant_row(conn, tenant)
    await conn.execute("UPDATE ingest_poll_tenants SET upload_at = now(), upload_entries = $2, "
                       "upload_unresolved = $3 WHERE tenant = $1", tenant, entries, unresolved)


async def status(conn: asyncpg.Connection, tenant: str, limit: int) -> dict:
    """What ``vigil poll status`` shows: the tenant's round and refresh, the watched patients."""
    row = await conn.fetchrow("SELECT * FROM ingest_poll_tenants WHERE tenant = $1", tenant)
    patients = await conn.fetch(
        f"SELECT patient_id, source, added_at, watch_until, cursor_updated, last_polled, last_ok, last_error, "
        f"consecutive_errors, polls, notes, now() AS now FROM ingest_poll_patients WHERE tenant = $1 AND {_WATCHED} "
        f"ORDER BY last_ok ASC NULLS FIRST, patient_id LIMIT $2", tenant, limit)
    counts = await conn.fetchrow(
        f"SELECT count(*) AS watched, count(*) FILTER (WHERE last_error IS NOT NULL) AS failing, "
        f"max(now() - last_ok) AS max_lag, max(now() - cursor_updated) AS max_cursor_age "
        f"FROM ingest_poll_patients WHERE tenant = $1 AND {_WATCHED}", tenant)
    return {"tenant": row, "patients": patients, "counts": counts}
