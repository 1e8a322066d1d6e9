"""The inference gRPC service: wiring and start-up.

    vigil serve inference            # or: python -m services.inference.app

Listens on VIGIL_GRPC_INFERENCE_ADDR (default 127.0.0.1:50061). Every call needs a service
credential (``services.core.tokens``); the tenant of the call is the credential's.
"""
from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import Mapping

from services.core import kv
from services.core.config import Settings
from services.core import crypto
from services.core.db import create_pool, ensure_schema
from services.core.grpc.auth import SERVICE_ROLES
from services.core import serving
from services.core.grpc.server import RunningServer, serve as grpc_serve, start_server
from services.core.grpc.settings import GrpcSettings
from services.core.revocation import DenyList
from services.core.logging import configure, get_logger
from services.core.secrets import SecretSettings
from services.core.tenantdb import TenantPools
from services.core.tenantdir import TenantDirectory
from services.inference.chat import Chat
from services.inference.extract import Extract
from services.inference.llm.client import RetryPolicy
from services.inference.llm.engine import LlmEngine
from services.inference.llm.ledger import Ledger
from services.inference.routing import Router, RulesAdapter
from services.inference.rules.workers import RulesPool, workers_from_env
from vigil.v1 import inference_pb2, inference_pb2_grpc

log = get_logger("vigil.inference")
SERVICE_NAME = inference_pb2.DESCRIPTOR.services_by_name["Inference"].full_name


class InferenceServicer(inference_pb2_grpc.InferenceServicer):
    """One operation module per RPC; this table is the service's only routing."""

    def __init__(self, extract: Extract, chat: Chat):
        self.Extract = extract
        self.Chat = chat


class TenantRedis(kv.TenantClients):
    """The tenants' Redis clients (``kv.TenantClients``), or one shared client in development."""

    def __init__(self, settings: Settings, secrets: SecretSettings, shared=None):
        super().__init__(settings, secrets)
        self.shared = shared

    def __call__(self, tenant: str):
        return self.shared if self.shared is not None else super().__call__(tenant)


@dataclass
class InferenceApp:
    server: RunningServer
    pool: object
    redis: TenantRedis
    llm: LlmEngine
    tenant_pools: TenantPools
    rules: RulesAdapter | None = None

    @property
    def port(self) -> int:
        return self.server.port

    async def stop(self) -> None:
        await self.server.stop()
        if self.rules is not None:
            await asyncio.to_thread(self.rules.close)
        await self.llm.close()
        await self.redis.close()
        await self.tenant_pools.close()
        await self.pool.close()


async def start(settings: Settings, grpc_settings: GrpcSettings, *, address: str | None = None,
                env: Mapping[str, str] | None = None, policy: RetryPolicy = RetryPolicy(),
                shared_redis=None) -> InferenceApp:
    """Start the service. ``shared_redis`` replaces per-tenant ACL clients (development only)."""
    source_env = os.environ if env is None else env
    workers = workers_from_env(source_env)  # a bad VIGIL_RULES_WORKERS stops the start-up here
    secrets = SecretSettings.from_env(env)
    pool = await create_pool(settings)
    tenant_pools = TenantPools(settings, secrets)
    ledger = Ledger(pool, tenant_pools)
    await ledger.ensure_schema()
    await ensure_schema(pool, crypto.SCHEMA_MODULE, crypto.SCHEMA_STEPS)
    redis = TenantRedis(settings, secrets, shared_redis)
    llm = LlmEngine(ledger, redis, crypto.Keyring(tenant_pools, secrets), policy=policy, env=env)
    rules_pool = RulesPool(workers) if workers > 1 else None
    if rules_pool is not None:
        await asyncio.to_thread(rules_pool.warm)
    rules = RulesAdapter(pool=rules_pool)
    router = Router(rules, llm)
    tenants = TenantDirectory(settings.tenants_file)
    servicer = InferenceServicer(Extract(tenants, router), Chat(tenants, llm))
    server = await start_server([(inference_pb2_grpc.add_InferenceServicer_to_server, servicer, SERVICE_NAME)],
                                grpc_settings, address or grpc_settings.address("inference"),
                                allowed_roles=SERVICE_ROLES, revocations=await DenyList(settings).start())
    return InferenceApp(server, pool, redis, llm, tenant_pools, rules)


async def serve(env: Mapping[str, str] | None = None) -> None:
    source = os.environ if env is None else env
    settings = Settings.from_env(source)
    configure(settings.log_level)
    grpc_settings = GrpcSettings.from_env(source)
    await grpc_serve("inference", lambda: start(settings, grpc_settings, env=source))


if __name__ == "__main__":
    serving.main(serve)
