"""Exactly-once bookkeeping, inside the caller's transaction.

Each ``claim_*`` inserts a row and returns True if this caller is the first. The caller
publishes and only then commits: a concurrent claimer of the same row waits on the row
lock until the first commits (then sees it taken) or rolls back (then gets it). A failed
publish rolls the claim back, so nothing is marked seen that was not acknowledged.
"""
from __future__ import annotations

import asyncpg

ORIGINS = ("subscription", "hl7", "backfill", "poll", "batch")


async def claim_version(conn: asyncpg.Connection, tenant: str, resource_type: str, resource_id: str,
                        version_id: str, origin: str) -> bool:
    if origin not in ORIGINS:
        raise ValueError(f"origin must be one of {ORIGINS}")
    row = await conn.fetchval(
        "INSERT INTO ingest_seen_versions (tenant, resource_type, resource_id, version_id, origin) "
        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING 1",
        tenant, resource_type, resource_id, version_id, origin)
    return row is not None


async def version_seen(conn: asyncpg.Connection, tenant: str, resource_type: str, resource_id: str,
                       version_id: str) -> bool:
    return await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM ingest_seen_versions WHERE tenant = $1 AND resource_type = $2 "
        "AND resource_id = $3 AND version_id = $4)", tenant, resource_type, resource_id, version_id)


async def newer_version_seen(conn: asyncpg.Connection, tenant: str, resource_type: str, resource_id: str,
                             version_id: str) -> bool:
    """Was a later version of this resource already claimed? Versions compare as numbers when both are
    whole numbers (HAPI FHIR, Smile CDR, the sandbox); opaque version ids never compare as later."""
    if not version_id.isascii() or not version_id.isdigit() or len(version_id) > 18:
        return False
    return await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM ingest_seen_versions WHERE tenant = $1 AND resource_type = $2 "
        "AND resource_id = $3 "
        # CASE, not AND: PostgreSQL may cast before it filters, and a non-numeric id must not be cast
        "AND CASE WHEN version_id ~ '^[0-9]{1,18}$' THEN version_id::bigint END > $4::bigint)",
        tenant, resource_type, resource_id, int(version_id))


async def claim_event_number(conn: asyncpg.Connection, tenant: str, subscription: str, event_number: int) -> bool:
    row = await conn.fetchval(
        "INSERT INTO ingest_subscription_events (tenant, subscription, event_number) VALUES ($1, $2, $3) "
        "ON CONFLICT DO NOTHING RETURNING 1", tenant, subscription, event_number)
    return row is not None


async def seen_event_numbers(conn: asyncpg.Connection, tenant: str, subscription: str, low: int, high: int) -> set[int]:
    rows = await conn.fetch(
        "SELECT event_number FROM ingest_subscription_events WHERE tenant = $1 AND subscription = $2 "
        "AND event_number BETWEEN $3 AND $4", tenant, subscription, low, high)
    return {r["event_number"] for r in rows}
