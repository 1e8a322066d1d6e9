"""HL7 messages kept for dedupe (MSH-10) and replay; the raw text is encrypted by the caller."""
from __future__ import annotations

import json
from dataclasses import dataclass

import asyncpg


@dataclass(frozen=True)
class Prior:
    """An earlier message with the same dedupe key."""

    body_sha256: str
    resources: list


async def claim_message(conn: asyncpg.Connection, tenant: str, facility: str, control_id: str, event: str,
                        body_sha256: str, raw_encrypted: bytes) -> Prior | None:
    """Record the message; returns None when it is new, else what was recorded before."""
    inserted = await conn.fetchval(
        "INSERT INTO ingest_hl7_messages (tenant, facility, control_id, event, body_sha256, raw) "
        "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING 1",
        tenant, facility, control_id, event, body_sha256, raw_encrypted)
    if inserted:
        return None
    row = await conn.fetchrow(
        "SELECT body_sha256, resources FROM ingest_hl7_messages WHERE tenant = $1 AND facility = $2 "
        "AND control_id = $3 AND event = $4", tenant, facility, control_id, event)
    return Prior(row["body_sha256"], json.loads(row["resources"]) if isinstance(row["resources"], str)
                 else list(row["resources"]))


async def set_resources(conn: asyncpg.Connection, tenant: str, facility: str, control_id: str, event: str,
                        resources: list[dict]) -> None:
    """The references the message produced (type, id, versionId) — no content."""
    await conn.execute(
        "UPDATE ingest_hl7_messages SET resources = $5::jsonb WHERE tenant = $1 AND facility = $2 "
        "AND control_id = $3 AND event = $4", tenant, facility, control_id, event, json.dumps(resources))


async def keep_reject(conn: asyncpg.Connection, tenant: str, control_id: str, ack_code: str, error_code: str,
                      raw_encrypted: bytes) -> int:
    return await conn.fetchval(
        "INSERT INTO ingest_hl7_rejects (tenant, control_id, ack_code, error_code, raw) VALUES ($1, $2, $3, $4, $5) "
        "RETURNING id", tenant, control_id[:199], ack_code, error_code, raw_encrypted)


async def raw_messages(conn: asyncpg.Connection, tenant: str, limit: int = 100) -> list[asyncpg.Record]:
    """Accepted messages, newest first (encrypted raw), for replay tooling."""
    return await conn.fetch(
        "SELECT facility, control_id, event, raw, received_at FROM ingest_hl7_messages WHERE tenant = $1 "
        "ORDER BY received_at DESC LIMIT $2", tenant, limit)
