"""The extraction stage: wiring and start-up.

    python -m services.extraction.app

Consumes ``ehr-events`` of every tenant in the registry (``services.core.bus.service``), calls
tools (VIGIL_GRPC_TOOLS_ADDR) and inference (VIGIL_GRPC_INFERENCE_ADDR) with its own service
credential (``VIGIL_GRPC_TOKEN_*``), emits ``findings`` with the evidence quotes sealed by each
tenant's data key (read through the tenant's own PostgreSQL role, ``TenantPools``). Health and
metrics on VIGIL_METRICS_PORT.
"""
from __future__ import annotations

from typing import Mapping

from services.core.agentclients import AgentClients
from services.core.bus import StageSpec
from services.core.bus.service import serve_stage
from services.core.config import Settings
from services.core.crypto import Keyring
from services.core.db import create_pool, ensure_schema
from services.core import crypto
from services.core.grpc import GrpcSettings
from services.core.secrets import SecretSettings
from services.core.tenantdb import TenantPools
from services.extraction.handler import STAGE, Extraction


def specs(clients: AgentClients, pools: TenantPools, **kw) -> list[StageSpec]:
    """The stage's one spec (``kw``: retry / tuning overrides, for tests)."""
    return [StageSpec(name=STAGE, input_stream="ehr-events", handler=Extraction(clients, Keyring(pools)), **kw)]


async def migrate(settings: Settings) -> None:
    """The data-key table the sealing needs (admin DSN; idempotent)."""
    pool = await create_pool(settings, min_size=1, max_size=1)
    try:
        await ensure_schema(pool, crypto.SCHEMA_MODULE, crypto.SCHEMA_STEPS)
    finally:
        await pool.close()


async def build(settings: Settings, env: Mapping[str, str]):
    await migrate(settings)
    pools = TenantPools(settings, SecretSettings.from_env(env))
    clients = AgentClients(GrpcSettings.from_env(env), sub=STAGE)
    return specs(clients, pools), [clients, pools]


if __name__ == "__main__":
    serve_stage(STAGE, build)
