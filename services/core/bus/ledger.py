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


#: The batch's event ids travel as one newline-joined argument and the script builds the keys
#: (prefix .. id): a 500-event batch is then a few arguments for the client to pack, not 500+.
#: ARGV = ttl, done-key prefix, joined ids.
_MARK_DONE = """
local n = 0
for id in string.gmatch(ARGV[3], '[^\\n]+') do
  redis.call('SET', ARGV[2] .. id, '1', 'EX', ARGV[1]); n = n + 1
end
return n
"""
#: ARGV = done-key prefix, joined ids, blocked-key prefix, joined key hashes. Reply: a '0'/'1'
#: string (one flag per id) and the flat list of (key index, blocking event id) for the blocked
#: keys that exist: a few bytes back instead of one reply per key. One EXISTS over all the done
#: keys answers the usual case (nothing done yet) in a single command; only when some exist is
#: each asked. Keys go to a command in chunks (Lua's stack holds a few thousand values).
_LOOKUP = """
local function chunked(command, keys, reply)
  for i = 1, #keys, 1000 do
    reply(redis.call(command, unpack(keys, i, math.min(i + 999, #keys))), i)
  end
end
local done = {}
for id in string.gmatch(ARGV[2], '[^\\n]+') do done[#done + 1] = ARGV[1] .. id end
local any = 0
chunked('EXISTS', done, function(n) any = any + n end)
local flags
if any == 0 then
  flags = string.rep('0', #done)
else
  local each = {}
  for i = 1, #done do each[i] = redis.call('EXISTS', done[i]) == 1 and '1' or '0' end
  flags = table.concat(each)
end
local keys = {}
for h in string.gmatch(ARGV[4], '[^\\n]+') do keys[#keys + 1] = ARGV[3] .. h end
local blocked = {}
chunked('MGET', keys, function(values, first)
  for j = 1, #values do
    if values[j] then blocked[#blocked + 1] = tostring(first + j - 1); blocked[#blocked + 1] = values[j] end
  end
end)
return {flags, blocked}
"""


def _joined(ids: list[str]) -> str:
    """The ids as one argument; ValueError for an id the scripts could not split back out (empty,
    or holding a newline - control characters are not allowed in CloudEvents strings anyway)."""
    joined = "\n".join(ids)
    if joined.count("\n") != len(ids) - 1 or "\n\n" in joined or not all((ids[0], ids[-1])):
        raise ValueError("event id empty or holding a newline")
    return joined


@lru_cache(maxsize=65536)  # patients recur from batch to batch
def _hash(key: str | None) -> str:
    return hashlib.sha256((key or "").encode()).hexdigest()[:24]


class Ledger:
    def __init__(self, redis: aioredis.Redis, tenant: str, stage: str, ttl_s: int):
        self.redis, self.tenant, self.stage, self.ttl_s = redis, tenant, stage, ttl_s
        self._done_prefix, self._blocked_prefix = self._k("done", ""), self._k("blocked", "")
        # EVALSHA: the script's digest travels, not its text (loaded once when the server lacks it)
        self._lookup, self._mark_done = redis.register_script(_LOOKUP), redis.register_script(_MARK_DONE)

    def _k(self, kind: str, part: str) -> str:
        return kv.key(self.tenant, "bus", self.stage, kind, part)

    async def lookup(self, event_ids: list[str], keys: list[str | None]) -> tuple[set[str], dict[str, str]]:
        """One round trip: which ids are done, and which keys are blocked (key -> blocking id)."""
        if not event_ids and not keys:
            return set(), {}
        flags, pairs = await self._lookup(args=(self._done_prefix, _joined(event_ids) if event_ids else "",
                                                self._blocked_prefix, "\n".join([_hash(k) for k in keys])))
        flags = flags.decode() if isinstance(flags, bytes) else flags
        if len(flags) != len(event_ids):
            raise RuntimeError(f"ledger lookup answered {len(flags)} flags for {len(event_ids)} ids")
        done = {i for i, flag in zip(event_ids, flags) if flag == "1"}
        blocked = {keys[int(pairs[j]) - 1]: _text(pairs[j + 1]) for j in range(0, len(pairs), 2)}
        return done, blocked

    async def mark_done(self, event_ids: list[str]) -> None:
        if not event_ids:
            return
        # One round trip and one command for the whole batch: SET <prefix><id> 1 EX ttl for each id.
        marked = await self._mark_done(args=(self.ttl_s, self._done_prefix, _joined(event_ids)))
        if marked != len(event_ids):
            raise RuntimeError(f"ledger marked {marked} of {len(event_ids)} ids")

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
