"""The extraction stage: wiring and start-up.

    python -m services.extraction.app [--lane realtime|batch]

Consumes ``ehr-events`` of every tenant in the registry (``services.core.bus.service``), calls
tools (VIGIL_GRPC_TOOLS_ADDR) and inference (VIGIL_GRPC_INFERENCE_ADDR) with its own service
credential (``VIGIL_GRPC_TOKEN_*``), emits ``findings`` with the evidence quotes sealed by each
tenant's data key (read through the tenant's own PostgreSQL role, ``TenantPools``). Health and
metrics on VIGIL_METRICS_PORT. ``--lane batch`` runs the batch lane's instance instead
(``services.core.lanes``): stage ``extraction-batch`` on ``batch-events`` -> ``batch-findings``, at
the lowest CPU priority and at most ``VIGIL_BATCH_MAX_RATE`` notes per second when set.
"""
from __future__ import annotations

import functools
import sys
from typing import Mapping

from services.core import contracts
from services.core import crypto
from services.core.agentclients import AgentClients
from services.core.bus import ConsumerTuning, StageSpec
from services.core.bus.service import serve_stage
from services.core.config import Settings
from services.core.crypto import Keyring
from services.core.db import create_pool, ensure_schema
from services.core.grpc.settings import GrpcSettings
from services.core.lanes import (BATCH, BATCH_KEY_LANES, LANES, REALTIME, Lane, Pacer, deprioritise, from_argv,
                                max_rate)
from services.core.secrets import SecretSettings
from services.core.tenantdb import TenantPools
from services.extraction.handler import STAGE, Extraction

BATCH_LANE = LANES[BATCH]


def specs(clients: AgentClients, pools: TenantPools, lane: Lane = LANES[REALTIME], rate: float = 0.0,
          **kw) -> list[StageSpec]:
    """The stage's one spec in ``lane`` (``rate``: the batch lane's notes/s budget, 0 = none;
    ``kw``: retry / tuning overrides, for tests)."""
    keyring = Keyring(pools)
    if lane.batch:
        kw.setdefault("tuning", ConsumerTuning(key_lanes=BATCH_KEY_LANES))
        return [StageSpec(name=BATCH_LANE.stage(STAGE), input_stream=BATCH_LANE.events,
                          handler=Extraction(clients, keyring, BATCH_LANE, Pacer(rate)), **kw)]
    return [StageSpec(name=STAGE, input_stream=contracts.EHR_EVENTS, handler=Extraction(clients, keyring), **kw)]


async def migrate(settings: Settings) -> None:
    """The data-key table the sealing needs (admin DSN; idempotent)."""
    pool = await create_pool(settings, min_size=1, max_size=1)
    try:
        await ensure_schema(pool, crypto.SCHEMA_MODULE, crypto.SCHEMA_STEPS)
    finally:
        await pool.close()


async def build(settings: Settings, env: Mapping[str, str], lane: Lane = LANES[REALTIME]):
    await migrate(settings)
    pools = TenantPools(settings, SecretSettings.from_env(env))
    clients = AgentClients(GrpcSettings.from_env(env), sub=STAGE)
    return specs(clients, pools, lane, max_rate(env) if lane.batch else 0.0), [clients, pools]


if __name__ == "__main__":
    chosen = from_argv(sys.argv[1:])
    deprioritise(chosen)
    serve_stage(chosen.stage(STAGE), functools.partial(build, lane=chosen))
