"""Slot holds: a Redis lock per slot with a TTL, so two conversations cannot take the same slot.

Key ``vigil:<tenant>:slot-hold:<slot id>`` = holder (conversation id), set with NX and a TTL,
through the tenant's own Redis ACL client (``services.core.kv.tenant_client``).
"""
from __future__ import annotations

from services.core import kv
from services.core.config import Settings
from services.core.secrets import SecretSettings

DEFAULT_HOLD_S = 600
MAX_HOLD_S = 3600
#: Compare-and-delete / compare-and-extend: only the holder may release or extend its hold.
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"


class SlotHolds:
    def __init__(self, settings: Settings, secrets: SecretSettings | None = None):
        self.settings, self.secrets = settings, secrets
        self._clients = kv.TenantClients(settings, secrets, decode_responses=True)

    async def client(self, tenant: str):
        return self._clients(tenant)

    @staticmethod
    def key(tenant: str, slot_id: str) -> str:
        return kv.key(tenant, "slot-hold", slot_id)

    async def hold(self, tenant: str, slot_id: str, holder: str, ttl_s: int) -> bool:
        redis = await self.client(tenant)
        name = self.key(tenant, slot_id)
        if await redis.set(name, holder, nx=True, ex=ttl_s):
            return True
        if await redis.get(name) == holder:
            await redis.expire(name, ttl_s)
            return True
        return False

    async def holder(self, tenant: str, slot_id: str) -> str | None:
        return await (await self.client(tenant)).get(self.key(tenant, slot_id))

    async def holders(self, tenant: str, slot_ids: list[str]) -> list[str | None]:
        if not slot_ids:
            return []
        return await (await self.client(tenant)).mget([self.key(tenant, s) for s in slot_ids])

    async def release(self, tenant: str, slot_id: str, holder: str) -> bool:
        redis = await self.client(tenant)
        return bool(await redis.eval(_RELEASE, 1, self.key(tenant, slot_id), holder))

    async def close(self) -> None:
        await self._clients.close()
