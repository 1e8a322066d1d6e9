"""Fixtures for the agent stages (extraction, triage) and their shared state (modes, ledger):
a provisioned tenant (PostgreSQL role, Redis ACL user, tables), the EHR sandbox with a SMART
client for tools, tools and inference gRPC servers on loopback, and the stage specs wired to them.
"""
from __future__ import annotations

import asyncio
import contextlib
import json

import pytest

from tests.fixtures.kafka import read_topic  # noqa: F401 (re-exported for the tests here)

from services.control import modes as control_modes
from services.core import evidence, kv
from services.triage import ledger as decisions
from services.core.agentclients import AgentClients
from services.core.bus import ConsumerTuning, Publisher, RetryPolicy, ensure_stage_topics
from services.core.bus.service import StageHost
from services.core.crypto import Keyring
from services.core.db import create_pool, ensure_schema
from services.core.events import Event, decode
from services.core.grpc.settings import GrpcSettings
from services.core.secrets import SecretSettings
from services.core.tenancy import Registry, Tenant, topic_name
from services.core.tenantdb import TenantPools, provision_tenant_role, quote_ident, tenant_role
from services.inference import app as inference_app
from services.tools import app as tools_app
from services.triage import episodes
from tests.fixtures.ehr import ehr_server, ehr_tenant  # noqa: F401  (fixtures)

TEST_KEY = "k" * 48
FAST_RETRY = RetryPolicy(quick_attempts=2, quick_wait_initial_s=0.01, quick_wait_max_s=0.05, retry_backoff_s=(0.3, 0.6))
FAST_TUNING = ConsumerTuning(poll_timeout_ms=100, commit_interval_ms=200, handler_timeout_s=10.0, liveness_stall_s=20.0)


@pytest.fixture(scope="session")
def secrets() -> SecretSettings:
    return SecretSettings.from_env({"VIGIL_ENV": "test"})


@pytest.fixture
def grpc_settings() -> GrpcSettings:
    return GrpcSettings.from_env({"VIGIL_GRPC_TOKEN_KEY": TEST_KEY})


@pytest.fixture
async def provisioned(stack, tenant_id, secrets):
    """The test tenant's PostgreSQL role and Redis ACL user, and every table the agents use."""
    admin = await create_pool(stack, min_size=1, max_size=2)
    await control_modes.ensure_schema(admin)  # the modes table (the control service owns it)
    await decisions.ensure_schema(admin)
    await ensure_schema(admin, episodes.SCHEMA_MODULE, episodes.SCHEMA_STEPS)
    async with admin.acquire() as conn:
        await provision_tenant_role(conn, tenant_id, secrets)
    await kv.provision_tenant_user(stack, tenant_id, secrets)
    pools = TenantPools(stack, secrets)
    yield pools
    await pools.close()
    await kv.remove_tenant_user(stack, tenant_id)
    async with admin.acquire() as conn:
        await conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
                           tenant_role(tenant_id))
        with contextlib.suppress(Exception):
            await conn.execute(f"DROP ROLE IF EXISTS {quote_ident(tenant_role(tenant_id))}")
    await admin.close()


class Agents:
    """Everything a stage test needs; ``registry(mode=..., **settings)`` rewrites the tenant entry."""

    def __init__(self, stack, tenant_id, ehr, tools_creds, key_file, path, pools, clients):
        self.stack, self.tenant, self.ehr, self.pools, self.clients = stack, tenant_id, ehr, pools, clients
        self._tools_creds, self._key_file, self.path = tools_creds, key_file, path
        self.settings = stack.with_overrides(tenants_file=path)

    def registry(self, mode: str = "active", **settings) -> Tenant:
        tenant = Tenant(id=self.tenant, mode=mode, partitions=4, ehr_base_url=self.ehr.base_url, settings={
            "fhir_client_id": "vigil-tools", "fhir_private_key_file": str(self._key_file),
            "fhir_key_id": self._tools_creds.kid, **settings})
        Registry(self.path, [tenant]).save()
        return tenant

    async def publish(self, stream: str, events: list[Event]) -> None:
        """Publish as a stage would: evidence quotes sealed with the tenant key."""
        keyring = Keyring(self.pools)
        async with Publisher(self.stack, self.tenant) as pub:
            await pub.publish_many(stream, [await evidence.seal_event(keyring, e) for e in events])

    async def opened(self, events: list[Event]) -> list[Event]:
        """Events read from a topic with their evidence quotes opened."""
        keyring = Keyring(self.pools)
        return [await evidence.open_event(keyring, e) for e in events]

    async def read(self, stream: str, want: int, timeout: float = 30.0, settle: float = 0.0) -> list[Event]:
        return [decode(m.key, m.value, m.headers) for m in
                await read_topic(self.stack, topic_name(self.tenant, stream), want, timeout, settle=settle)]

    @contextlib.asynccontextmanager
    async def host(self, specs, **kw):
        await ensure_stage_topics(self.stack, Tenant(id=self.tenant), specs)
        host = StageHost(self.settings, specs, port=0, host="127.0.0.1", tenants=[self.tenant], **kw)
        await host.start()
        stop = asyncio.Event()
        task = asyncio.create_task(host.run(stop))
        try:
            yield host
        finally:
            stop.set()
            await task
            await host.stop()


@pytest.fixture
async def agents(stack, tenant_id, ehr_tenant, provisioned, grpc_settings, tmp_path):  # noqa: F811
    creds = await ehr_tenant.admin.new_client(tenant_id, "vigil-tools", ["system/*.rs"])
    key_file = tmp_path / "tools.pem"
    key_file.write_text(creds.private_key_pem)
    path = tmp_path / "tenants.toml"
    clients = AgentClients(grpc_settings, sub="test-agent")
    handle = Agents(stack, tenant_id, ehr_tenant, creds, key_file, path, provisioned, clients)
    handle.registry()
    tools = await tools_app.start(handle.settings, grpc_settings, address="127.0.0.1:0")
    inference = await inference_app.start(handle.settings, grpc_settings, address="127.0.0.1:0", env={})
    clients.targets.update(tools=f"127.0.0.1:{tools.port}", inference=f"127.0.0.1:{inference.port}")
    handle.tools, handle.inference = tools, inference
    yield handle
    await clients.close()
    await handle.tools.stop()
    await handle.inference.stop()




def dumps(value) -> str:
    return json.dumps(value, sort_keys=True)
