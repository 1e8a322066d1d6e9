"""Redis state of a stage: the processed-event ledger and parked patient keys.

Keys (all under the tenant prefix, patient ids hashed so none appears in plain text):
  vigil:<t>:bus:<stage>:done:<event id>     "1" with TTL   - event fully processed
  vigil:<t>:bus:<stage>:blocked:<key hash>  event id       - this event of the key is in retry
  vigil:<t>:bus:<stage>:parked:<key hash>   sorted set     - "<partition>:<offset>" of the key's
                                                             later input events, score = offset
A key is parked while ``blocked`` exists; its later events wait in ``parked`` (coordinates
only, no payload) and are replayed in offset order when the blocking event resolves.
"""
from __future__ import annotations

import hashlib

import redis.asyncio as aioredis

from services.core import kv


_MARK_DONE = "for i, k in ipairs(KEYS) do redis.call('SET', k, '1', 'EX', ARGV[1]) end return #KEYS"


def _hash(key: str | None) -> str:
    return hashlib.sha256((key or "").encode()).hexdigest()[:24]


class Ledger:
    def __init__(self, redis: aioredis.Redis, tenant: str, stage: str, ttl_s: int):
        self.redis, self.tenant, self.stage, self.ttl_s = redis, tenant, stage, ttl_s

    def _k(self, kind: str, part: str) -> str:
        return kv.key(self.tenant, "bus", self.stage, kind, part)

    async def lookup(self, event_ids: list[str], keys: list[str | None]) -> tuple[set[str], dict[str, str]]:
        """One round trip: which ids are done, and which keys are blocked (key -> blocking id)."""
        if not event_ids and not keys:
            return set(), {}
        pipe = self.redis.pipeline(transaction=False)
        pipe.mget([self._k("done", i) for i in event_ids] or ["-"])
        pipe.mget([self._k("blocked", _hash(k)) for k in keys] or ["-"])
        done_replies, blocked_replies = await pipe.execute()
        done = {i for i, r in zip(event_ids, done_replies) if r}
        blocked = {k: r.decode() for k, r in zip(keys, blocked_replies) if r}
        return done, blocked

    async def mark_done(self, event_ids: list[str]) -> None:
        if not event_ids:
            return
        # One round trip and one command for the whole batch: SET key 1 EX ttl for each key.
        await self.redis.eval(_MARK_DONE, len(event_ids), *(self._k("done", i) for i in event_ids), self.ttl_s)

    async def block(self, key: str | None, event_id: str) -> None:
        await self.redis.set(self._k("blocked", _hash(key)), event_id.encode())

    async def blocker(self, key: str | None) -> str | None:
        raw = await self.redis.get(self._k("blocked", _hash(key)))
        return raw.decode() if raw else None

    async def unblock(self, key: str | None) -> None:
        await self.redis.delete(self._k("blocked", _hash(key)))

    async def park(self, key: str | None, partition: int, offset: int) -> None:
        await self.redis.zadd(self._k("parked", _hash(key)), {f"{partition}:{offset}": offset}, nx=True)

    async def parked(self, key: str | None) -> list[tuple[int, int]]:
        members = await self.redis.zrange(self._k("parked", _hash(key)), 0, -1)
        return [tuple(int(x) for x in m.decode().split(":")) for m in members]

    async def unpark(self, key: str | None, partition: int, offset: int) -> None:
        await self.redis.zrem(self._k("parked", _hash(key)), f"{partition}:{offset}")
