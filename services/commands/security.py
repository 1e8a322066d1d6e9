"""Tenant security provisioning shared by the `keys` and `audit` commands and onboarding.

The functions here run the core provisioning coroutines with the process settings; they are
registered as `vigil tenant add` steps by ``register_onboarding`` (called from services/cli.py).
"""
from __future__ import annotations

import asyncio
import contextlib
from typing import AsyncIterator

import asyncpg

from services.commands import tenant as tenant_command
from services.core import audit, crypto, kv
from services.core.config import Settings
from services.core.db import create_pool, ensure_schema
from services.core.secrets import SecretSettings
from services.core.tenancy import Tenant
from services.core.tenantdb import TenantPools, provision_tenant_role


@contextlib.asynccontextmanager
async def admin_pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    """The platform connection with the security tables migrated."""
    pool = await create_pool(settings, min_size=1, max_size=2)
    try:
        await ensure_schema(pool, crypto.SCHEMA_MODULE, crypto.SCHEMA_STEPS)
        await ensure_schema(pool, audit.SCHEMA_MODULE, audit.SCHEMA_STEPS)
        yield pool
    finally:
        await pool.close()


@contextlib.asynccontextmanager
async def keyring(settings: Settings, secrets: SecretSettings) -> AsyncIterator[crypto.Keyring]:
    pools = TenantPools(settings, secrets)
    try:
        yield crypto.Keyring(pools)
    finally:
        await pools.close()


async def _postgres_role(settings: Settings, tenant: Tenant) -> str:
    async with admin_pool(settings) as pool, pool.acquire() as conn:
        return await provision_tenant_role(conn, tenant.id, SecretSettings.from_env())


async def _data_key(settings: Settings, tenant: Tenant) -> str:
    async with keyring(settings, SecretSettings.from_env()) as ring:
        return f"active key {await ring.active_key_id(tenant.id)}"


def postgres_role_step(settings: Settings, tenant: Tenant) -> str:
    return f"role {asyncio.run(_postgres_role(settings, tenant))}"


def redis_user_step(settings: Settings, tenant: Tenant) -> str:
    return f"ACL user {asyncio.run(kv.provision_tenant_user(settings, tenant.id))}"


def data_key_step(settings: Settings, tenant: Tenant) -> str:
    return asyncio.run(_data_key(settings, tenant))


#: Onboarding steps this module adds, in order (the data key needs the PostgreSQL role).
ONBOARDING: list[tuple[str, object]] = [
    ("postgres-role", postgres_role_step),
    ("redis-acl-user", redis_user_step),
    ("data-key", data_key_step),
]


def register_onboarding() -> None:
    for name, step in ONBOARDING:
        tenant_command.register_step(name, step)
