"""Response cache in Redis: validated model output per (model, prompt hash, input hash).

Keys live under the tenant's prefix, ``vigil:<tenant>:llm-cache:<model>:<prompt>:<input>``, so
one tenant can never read another's cached output (and tenant ACL users cannot reach them).
"""
from __future__ import annotations

import hashlib
import json

from services.core.kv import key

#: Cached outputs expire after a week: long enough to absorb redeliveries and re-runs of a
#: backfill, short enough that a changed model behind the same name is picked up.
CACHE_TTL_SECONDS = 7 * 24 * 3600


def cache_key(tenant: str, model: str, prompt_hash: str, input_hash: str) -> str:
    model_id = hashlib.sha256(model.encode()).hexdigest()[:16]
    return key(tenant, "llm-cache", model_id, prompt_hash[:32], input_hash)


class ResponseCache:
    def __init__(self, redis):
        self.redis = redis

    async def get(self, tenant: str, model: str, prompt_hash: str, input_hash: str) -> list[dict] | None:
        raw = await self.redis.get(cache_key(tenant, model, prompt_hash, input_hash))
        return None if raw is None else json.loads(raw)

    async def put(self, tenant: str, model: str, prompt_hash: str, input_hash: str, findings: list[dict]) -> None:
        await self.redis.set(cache_key(tenant, model, prompt_hash, input_hash), json.dumps(findings),
                             ex=CACHE_TTL_SECONDS)
