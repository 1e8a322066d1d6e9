"""The HL7 receipt log: one row per distinct message received (written by the hl7 stage).

A message is known by (facility, MSH-10, message type, body digest): an exact resend finds its
row and is a duplicate; a message that reuses an MSH-10 with other content is a new message
(senders do reuse control ids; both are kept and the reuse is counted). The raw message itself
is on ``vigil.<tenant>.hl7-inbound``, sealed; this log holds no message content.
"""
from __future__ import annotations

from dataclasses import dataclass

import asyncpg


@dataclass(frozen=True)
class Claim:
    new: bool  # False: an exact resend of a message already received
    reused_control_id: bool  # another message with this MSH-10 and other content was received before


async def claim_message(conn: asyncpg.Connection, tenant: str, facility: str, control_id: str, event: str,
                        body_sha256: str) -> Claim:
    """Record the message; whether it is new, and whether its MSH-10 was used for other content."""
    row = await conn.fetchrow(  # one round trip: the claim and whether the control id was used before
        "WITH claimed AS (INSERT INTO ingest_hl7_messages (tenant, facility, control_id, event, body_sha256) "
        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING 1) "
        "SELECT EXISTS (SELECT 1 FROM claimed) AS new, EXISTS (SELECT 1 FROM ingest_hl7_messages WHERE "
        "tenant = $1 AND facility = $2 AND control_id = $3 AND event = $4 AND body_sha256 <> $5) AS reused",
        tenant, facility, control_id, event, body_sha256)
    return Claim(new=row["new"], reused_control_id=row["new"] and row["reused"])


async def received(conn: asyncpg.Connection, tenant: str, limit: int = 100) -> list[asyncpg.Record]:
    """Messages received, newest first (keys only), for operations tooling."""
    return await conn.fetch(
        "SELECT facility, control_id, event, body_sha256, received_at FROM ingest_hl7_messages WHERE tenant = $1 "
        "ORDER BY received_at DESC LIMIT $2", tenant, limit)
