"""Fixtures for the inference tests: the scripted LLM server, a ledger on the real PostgreSQL,
the real Redis, and a tenant whose LLM endpoint is the scripted server."""
from __future__ import annotations

import pytest

from services.core import crypto, kv
from services.core.db import create_pool, ensure_schema
from services.core.tenantdb import TenantPools
from services.core.tenancy import Tenant
from services.inference.llm.client import RetryPolicy
from services.inference.llm.engine import LlmEngine
from services.inference.llm.ledger import Ledger


#: Fast retries for tests: same logic as production, shorter waits (0.05 s, 0.1 s, 0.2 s).
FAST_RETRIES = RetryPolicy(max_attempts=4, backoff_base=0.05, backoff_max=0.2, max_retry_after=5.0)
API_KEY_ENV = "VIGIL_TEST_LLM_KEY"


@pytest.fixture
async def ledger(stack, secrets):
    pool = await create_pool(stack, min_size=1, max_size=4)
    tenant_pools = TenantPools(stack, secrets)
    ledger = Ledger(pool, tenant_pools)
    await ledger.ensure_schema()
    await ensure_schema(pool, crypto.SCHEMA_MODULE, crypto.SCHEMA_STEPS)
    yield ledger
    await tenant_pools.close()
    await pool.close()


@pytest.fixture
async def tenant_id(provision) -> str:
    """A fresh tenant with its PostgreSQL role and Redis ACL user (removed after the test)."""
    return await provision()


@pytest.fixture
async def redis(stack, secrets):
    """One Redis client per tenant, authenticated as the tenant's ACL user."""
    clients: dict = {}

    def for_tenant(tenant: str):
        if tenant not in clients:
            clients[tenant] = kv.tenant_client(stack, tenant, secrets)
        return clients[tenant]

    yield for_tenant
    for client in clients.values():
        await client.aclose()


def llm_tenant(tenant_id: str, base_url: str, **settings) -> Tenant:
    base = {"engine": "llm", "llm_base_url": base_url, "llm_model": "fake-model", "llm_api_key_env": API_KEY_ENV,
            "llm_timeout_seconds": 5, "llm_price_input_per_mtok": 1.0, "llm_price_output_per_mtok": 2.0}
    base.update(settings)
    return Tenant(id=tenant_id, display_name="test", mode="active", settings=base)


@pytest.fixture
def make_tenant(tenant_id, fake_llm):
    def make(**settings) -> Tenant:
        return llm_tenant(tenant_id, fake_llm.base_url, **settings)
    return make


@pytest.fixture
async def engine(ledger, redis, secrets):
    engine = LlmEngine(ledger, redis, crypto.Keyring(ledger.tenants, secrets), policy=FAST_RETRIES,
                       env={API_KEY_ENV: "sk-test-key"})
    yield engine
    await engine.close()
