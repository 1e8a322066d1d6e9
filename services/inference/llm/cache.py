"""Response cache in Redis: validated model output per (model, prompt hash, input hash).

Keys live under the tenant's prefix, ``vigil:<tenant>:llm-cache:<model>:<prompt>:<input>``, so
one tenant can never read another's cached output (and tenant ACL users cannot reach them).
Values hold quotes from notes, so they are encrypted with the tenant's data key
(``services.core.crypto``, purpose ``llm-cache``); a value that does not decrypt is a miss.
"""
from __future__ import annotations

import hashlib
import json

from services.core.crypto import DecryptionError, Keyring
from services.core.kv import key
from services.core.logging import get_logger

log = get_logger("vigil.inference.llm.cache")
CACHE_PURPOSE = "llm-cache"

#: Cached outputs expire after a week: long enough to absorb redeliveries and re-runs of a
#: backfill, short enough that a changed model behind the same name is picked up.
CACHE_TTL_SECONDS = 7 * 24 * 3600


def cache_key(tenant: str, model: str, prompt_hash: str, input_hash: str) -> str:
    model_id = hashlib.sha256(model.encode()).hexdigest()[:16]
    return key(tenant, "llm-cache", model_id, prompt_hash[:32], input_hash)


class ResponseCache:
    def __init__(self, redis, keyring: Keyring):
        self.redis = redis
        self.keyring = keyring

    async def get(self, tenant: str, model: str, prompt_hash: str, input_hash: str) -> list[dict] | None:
        blob = await self.redis.get(cache_key(tenant, model, prompt_hash, input_hash))
        if blob is None:
            return None
        try:
            return json.loads(await self.keyring.decrypt(tenant, blob, CACHE_PURPOSE))
        except (DecryptionError, ValueError):
            log.warning("llm.cache_unreadable", tenant=tenant)
            return None

    async def put(self, tenant: str, model: str, prompt_hash: str, input_hash: str, findings: list[dict]) -> None:
        blob = await self.keyring.encrypt(tenant, json.dumps(findings).encode(), CACHE_PURPOSE)
        await self.redis.set(cache_key(tenant, model, prompt_hash, input_hash), blob, ex=CACHE_TTL_SECONDS)
