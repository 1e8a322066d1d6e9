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
from functools import lru_cache

import redis.asyncio as aioredis

from services.core import kv


_MARK_DONE = "for i, k in ipairs(KEYS) do redis.call('SET', k, '1', 'EX', ARGV[1]) end return #KEYS"
#: KEYS = ARGV[1] done keys, then blocked keys. Reply: a '0'/'1' string (one flag per done key)
#: and the flat list of (blocked key index, blocking event id) for the blocked keys that exist:
#: a few bytes back instead of one nil reply per key, which the client parses one at a time.
_LOOKUP = """
local n = tonumber(ARGV[1])
local flags = {}
for i = 1, n do flags[i] = redis.call('EXISTS', KEYS[i]) == 1 and '1' or '0' end
local blocked = {}
for i = n + 1, #KEYS do
  local v = redis.call('GET', KEYS[i])
  if v then blocked[#blocked + 1] = tostring(i - n); blocked[#blocked + 1] = v end
end
return {table.concat(flags), blocked}
"""


@lru_cache(maxsize=65536)  # patients recur from batch to batch
def _hash(key: str | None) -> str:
    return hashlib.sha256((key or "").encode()).hexdigest()[:24]


class Ledger:
    def __init__(self, redis: aioredis.Redis, tenant: str, stage: str, ttl_s: int):
        self.redis, self.tenant, self.stage, self.ttl_s = redis, tenant, stage, ttl_s
        self._done_prefix = self._k("done", "")

    def _k(self, kind: str, part: str) -> str:
        return kv.key(self.tenant, "bus", self.stage, kind, part)

    async def lookup(self, event_ids: list[str], keys: list[str | None]) -> tuple[set[str], dict[str, str]]:
        """One round trip: which ids are done, and which keys are blocked (key -> blocking id)."""
        if not event_ids and not keys:
            return set(), {}
        prefix = self._done_prefix
        done_keys = [prefix + i for i in event_ids]
        blocked_keys = [self._k("blocked", _hash(k)) for k in keys]
        flags, pairs = await self.redis.eval(_LOOKUP, len(done_keys) + len(blocked_keys), *done_keys,
                                             *blocked_keys, len(done_keys))
        flags = flags.decode() if isinstance(flags, bytes) else flags
        done = {i for i, flag in zip(event_ids, flags) if flag == "1"}
        blocked = {keys[int(pairs[j]) - 1]: _text(pairs[j + 1]) for j in range(0, len(pairs), 2)}
        return done, blocked

    async def mark_done(self, event_ids: list[str]) -> None:
        if not event_ids:
            return
        # One round trip and one command for the whole batch: SET key 1 EX ttl for each key.
        prefix = self._done_prefix
        await self.redis.eval(_MARK_DONE, len(event_ids), *[prefix + i for i in event_ids], self.ttl_s)

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


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
