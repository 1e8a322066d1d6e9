"""`vigil tenant add` provisions the tenant's PostgreSQL role, Redis ACL user and data key."""
from __future__ import annotations

import asyncio
import uuid

from typer.testing import CliRunner

from services.commands.security import ONBOARDING
from services.commands.tenant import ONBOARDING_STEPS
from services.core import kv
from services.core.crypto import Keyring
from services.core.tenantdb import TenantPools, quote_ident, tenant_role


async def test_tenant_add_provisions_credentials_and_key(stack, secrets, admin_pool, tmp_path, monkeypatch):
    from services.cli import app  # the `tenant` group registers the steps when it is loaded

    tenant = "t" + uuid.uuid4().hex[:12]
    monkeypatch.setenv("VIGIL_TENANTS_FILE", str(tmp_path / "tenants.toml"))
    monkeypatch.setenv("VIGIL_POSTGRES_DSN", stack.postgres_dsn)
    monkeypatch.setenv("VIGIL_REDIS_URL", stack.redis_url)
    monkeypatch.setenv("VIGIL_KAFKA_BOOTSTRAP", stack.kafka.bootstrap)
    monkeypatch.setenv("VIGIL_ENV", "test")
    try:
        result = await asyncio.to_thread(CliRunner().invoke, app, ["tenant", "add", tenant, "--partitions", "1"])
        assert result.exit_code == 0, result.output
        assert [n for n, _ in ONBOARDING_STEPS][-3:] == [n for n, _ in ONBOARDING]
        for step in ("postgres-role", "redis-acl-user", "data-key"):
            assert step in result.output
        async with admin_pool.acquire() as conn:
            role = await conn.fetchrow("SELECT rolcanlogin, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1",
                                       tenant_role(tenant))
            keys = await conn.fetch("SELECT key_id, active FROM vigil_tenant_keys WHERE tenant = $1", tenant)
        assert tuple(role) == (True, False, False)
        assert [tuple(k) for k in keys] == [(1, True)]
        client = kv.tenant_client(stack, tenant, secrets)
        try:
            await client.set(kv.key(tenant, "onboarded"), b"1", ex=30)
            assert await client.get(kv.key(tenant, "onboarded")) == b"1"
        finally:
            await client.aclose()
        pools = TenantPools(stack, secrets)
        try:
            ring = Keyring(pools)
            assert await ring.decrypt(tenant, await ring.encrypt(tenant, b"x", "dlq"), "dlq") == b"x"
        finally:
            await pools.close()
        again = await asyncio.to_thread(CliRunner().invoke, app, ["tenant", "add", tenant, "--partitions", "1"])
        assert again.exit_code == 0, again.output  # re-running repairs, never duplicates
        async with admin_pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM vigil_tenant_keys WHERE tenant = $1", tenant) == 1
    finally:
        await kv.remove_tenant_user(stack, tenant)
        admin = kv.admin_client(stack)
        await admin.delete(kv.key(tenant, "onboarded"))
        await admin.aclose()
        async with admin_pool.acquire() as conn:
            await conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
                               tenant_role(tenant))
            await conn.execute(f"DROP ROLE IF EXISTS {quote_ident(tenant_role(tenant))}")
