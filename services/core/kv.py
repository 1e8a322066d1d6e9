"""Redis clients. Keys are always ``vigil:<tenant>:...`` (see ``key``)."""
from __future__ import annotations

import redis.asyncio as aioredis

from services.core.config import Settings
from services.core.tenancy import check_tenant_id


def key(tenant: str, *parts: str) -> str:
    return ":".join(("vigil", check_tenant_id(tenant), *parts))


def admin_client(settings: Settings) -> aioredis.Redis:
    """The platform's own connection (provisioning, dev tooling); agents use tenant clients."""
    return aioredis.Redis.from_url(settings.redis_url, decode_responses=False)
