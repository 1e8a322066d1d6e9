"""Benchmark: the cost of tenant isolation against raw baselines, same servers, same run.

- PostgreSQL: N single-row insert transactions through ``TenantPools.tx`` (tenant login role,
  forced RLS, SET LOCAL app.tenant and statement_timeout) vs the same inserts through a plain
  pool as the platform superuser (RLS bypassed), 4 concurrent workers each.
- Redis: N SET+GET pairs through ``tenant_client`` (ACL user, key-pattern checks) vs the
  admin client, 4 concurrent workers each.
- Crypto: N 2 KiB notes through ``Keyring.encrypt`` (cached data key, header, AAD) vs raw
  AES-GCM with a fixed key.
- Audit: N ``audit.append`` calls (advisory lock, chain read, hash) vs plain inserts, each
  in its own ``tenant_tx``.

    python -m bench.isolation [N]
"""
from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from services.core import audit, crypto, kv
from services.core.config import Settings
from services.core.db import create_pool, ensure_schema
from services.core.secrets import SecretSettings
from services.core.tenantdb import TenantPools, provision_tenant_role, quote_ident, tenant_role, tenant_rls_sql

DEFAULT_N = 2000
WORKERS = 4
TABLE = "vigil_bench_isolation"
STEPS = [f"CREATE TABLE IF NOT EXISTS {TABLE} (id bigserial PRIMARY KEY, tenant text NOT NULL, v text NOT NULL);"
         f"GRANT USAGE ON SEQUENCE {TABLE}_id_seq TO vigil_app;", tenant_rls_sql(TABLE, ("SELECT", "INSERT"))]


async def _workers(n: int, fn) -> float:
    async def worker(w: int) -> None:
        for i in range(w, n, WORKERS):
            await fn(i)
    start = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(WORKERS)))
    return time.perf_counter() - start


def _line(name: str, n: int, raw: float, ours: float) -> None:
    print(f"{name:10} raw {n / raw:10.0f}/s   isolated {n / ours:10.0f}/s   ratio isolated/raw time {ours / raw:5.2f}x")


async def main(n: int) -> None:
    settings, secrets = Settings.from_env(), SecretSettings.from_env()
    tenant = "tbench" + uuid.uuid4().hex[:8]
    admin = await create_pool(settings, min_size=WORKERS, max_size=WORKERS)
    await ensure_schema(admin, crypto.SCHEMA_MODULE, crypto.SCHEMA_STEPS)
    await ensure_schema(admin, audit.SCHEMA_MODULE, audit.SCHEMA_STEPS)
    await ensure_schema(admin, "bench_isolation", STEPS)
    async with admin.acquire() as conn:
        await provision_tenant_role(conn, tenant, secrets)
    await kv.provision_tenant_user(settings, tenant, secrets)
    pools = TenantPools(settings, secrets, min_size=WORKERS, max_size=WORKERS)
    redis_admin, redis_tenant = kv.admin_client(settings), kv.tenant_client(settings, tenant, secrets)
    try:
        async def raw_pg(i):
            async with admin.acquire() as c, c.transaction():
                await c.execute(f"INSERT INTO {TABLE} (tenant, v) VALUES ($1, $2)", tenant, f"raw-{i}")

        async def our_pg(i):
            async with pools.tx(tenant) as c:
                await c.execute(f"INSERT INTO {TABLE} (tenant, v) VALUES ($1, $2)", tenant, f"iso-{i}")
        await our_pg(-1)  # warm the pool
        _line("postgres", n, await _workers(n, raw_pg), await _workers(n, our_pg))

        async def raw_redis(i):
            await redis_admin.set(kv.key(tenant, "raw", str(i)), b"x", ex=60)
            await redis_admin.get(kv.key(tenant, "raw", str(i)))

        async def our_redis(i):
            await redis_tenant.set(kv.key(tenant, "iso", str(i)), b"x", ex=60)
            await redis_tenant.get(kv.key(tenant, "iso", str(i)))
        _line("redis", n, await _workers(n, raw_redis), await _workers(n, our_redis))

        note, key = os.urandom(2048), AESGCM(os.urandom(32))
        ring = crypto.Keyring(pools)
        await ring.encrypt(tenant, note, "bench")
        start = time.perf_counter()
        for _ in range(n):
            nonce = os.urandom(12)
            key.encrypt(nonce, note, b"aad")
        raw = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(n):
            await ring.encrypt(tenant, note, "bench")
        _line("crypto", n, raw, time.perf_counter() - start)

        m = max(n // 4, 50)

        async def raw_audit(i):
            async with pools.tx(tenant) as c:
                await c.execute(f"INSERT INTO {TABLE} (tenant, v) VALUES ($1, $2)", tenant, f"a-{i}")

        async def our_audit(i):
            async with pools.tx(tenant) as c:
                await audit.append(c, tenant, "bench", "phi.read", [f"DocumentReference/{i}"], {"i": i})
        _line("audit", m, await _workers(m, raw_audit), await _workers(m, our_audit))
    finally:
        await redis_tenant.aclose()
        async for name in redis_admin.scan_iter(match=f"vigil:{tenant}:*", count=10_000):
            await redis_admin.delete(name)
        await redis_admin.aclose()
        await kv.remove_tenant_user(settings, tenant)
        await pools.close()
        async with admin.acquire() as conn:
            await conn.execute(f"DROP ROLE IF EXISTS {quote_ident(tenant_role(tenant))}")
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_N))
