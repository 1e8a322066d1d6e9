"""Per-subscription progress: contiguous event number, lastUpdated checkpoint, liveness."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg


@dataclass(frozen=True)
class SubscriptionState:
    subscription: str
    topic: str
    last_event_number: int
    checkpoint: datetime | None
    last_heartbeat: datetime | None
    last_notification: datetime | None
    status: str

    @property
    def last_seen(self) -> datetime | None:
        times = [t for t in (self.last_heartbeat, self.last_notification) if t is not None]
        return max(times) if times else None


async def load(conn: asyncpg.Connection, tenant: str, subscription: str, *, for_update: bool = False) -> SubscriptionState:
    """The state row, created on first sight (checkpoint = now: nothing older is ours to catch up)."""
    await conn.execute(
        "INSERT INTO ingest_subscriptions (tenant, subscription, checkpoint) VALUES ($1, $2, now()) "
        "ON CONFLICT DO NOTHING", tenant, subscription)
    row = await conn.fetchrow(
        "SELECT subscription, topic, last_event_number, checkpoint, last_heartbeat, last_notification, status "
        "FROM ingest_subscriptions WHERE tenant = $1 AND subscription = $2" + (" FOR UPDATE" if for_update else ""),
        tenant, subscription)
    return SubscriptionState(**dict(row))


async def all_states(conn: asyncpg.Connection, tenant: str) -> list[SubscriptionState]:
    rows = await conn.fetch(
        "SELECT subscription, topic, last_event_number, checkpoint, last_heartbeat, last_notification, status "
        "FROM ingest_subscriptions WHERE tenant = $1 ORDER BY subscription", tenant)
    return [SubscriptionState(**dict(r)) for r in rows]


async def touch(conn: asyncpg.Connection, tenant: str, subscription: str, *, kind: str, status: str | None,
                topic: str | None) -> None:
    column = "last_heartbeat" if kind == "heartbeat" else "last_notification"
    await conn.execute(
        f"UPDATE ingest_subscriptions SET {column} = now(), status = coalesce($3, status), "
        "topic = CASE WHEN $4::text IS NULL OR $4 = '' THEN topic ELSE $4 END "
        "WHERE tenant = $1 AND subscription = $2", tenant, subscription, status, topic)


async def set_status(conn: asyncpg.Connection, tenant: str, subscription: str, status: str) -> None:
    await conn.execute("UPDATE ingest_subscriptions SET status = $3 WHERE tenant = $1 AND subscription = $2",
                       tenant, subscription, status)


async def advance(conn: asyncpg.Connection, tenant: str, subscription: str, event_number: int | None,
                  last_updated: str | None) -> None:
    """Move the contiguous event number and the lastUpdated checkpoint forward (never back)."""
    await conn.execute(
        "UPDATE ingest_subscriptions SET "
        "last_event_number = greatest(last_event_number, coalesce($3, last_event_number)), "
        "checkpoint = CASE WHEN $4::timestamptz IS NULL THEN checkpoint "
        "                  ELSE greatest(coalesce(checkpoint, $4::timestamptz), $4::timestamptz) END "
        "WHERE tenant = $1 AND subscription = $2", tenant, subscription, event_number,
        datetime.fromisoformat(last_updated.replace("Z", "+00:00")) if last_updated else None)
