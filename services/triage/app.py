"""The triage stage: wiring and start-up.

    python -m services.triage.app [--lane realtime|batch]

Two stage specs per tenant (``services.core.bus.service``): ``triage`` consumes ``findings``
and emits decisions on ``actions`` and follow-up requests on ``scheduling``; ``triage-feedback``
consumes ``feedback``: it records in the ledger what writeback wrote (``task-written``) and the
clinician's action, and closes episodes whose Task the clinician completed or rejected. Triage migrates and alone writes
the decision ledger (``ledger``).
Reads and writes PostgreSQL as each tenant's own role (``TenantPools``); calls tools
(VIGIL_GRPC_TOOLS_ADDR) with its own service credential. ``--lane batch`` runs the batch lane's
instance instead (``services.core.lanes``): one spec, ``triage-batch`` on ``batch-findings``, silent
decisions to the ledger and ``batch-decisions`` only, at a lower CPU priority.
"""
from __future__ import annotations

import functools
import sys
from typing import Mapping

from services.core import contracts
from services.core.agentclients import AgentClients
from services.core.bus import StageSpec
from services.core.bus.service import serve_stage
from services.core.config import Settings
from services.core.crypto import Keyring
from services.core.db import create_pool, ensure_schema
from services.core.grpc.settings import GrpcSettings
from services.core.lanes import BATCH, LANES, REALTIME, Lane, deprioritise, from_argv
from services.core.modes import ModeStore
from services.core.secrets import SecretSettings
from services.core.tenantdb import TenantPools
from services.core.tenantdir import TenantDirectory
from services.triage import episodes, ledger
from services.triage.handler import AGENT, Feedback, Triage


async def migrate(settings: Settings) -> None:
    """Create the tables triage uses (admin DSN; idempotent, safe with concurrent start-ups)."""
    pool = await create_pool(settings, min_size=1, max_size=1)
    try:
        await ledger.ensure_schema(pool)
        await ensure_schema(pool, episodes.SCHEMA_MODULE, episodes.SCHEMA_STEPS)
    finally:
        await pool.close()

BATCH_LANE = LANES[BATCH]


def specs(pools: TenantPools, clients: AgentClients, settings: Settings, lane: Lane = LANES[REALTIME],
          **kw) -> list[StageSpec]:
    """The stage's specs in ``lane`` (``kw``: retry / tuning overrides, for tests)."""
    keyring = Keyring(pools, pools.secrets)
    triage = Triage(pools, keyring, ModeStore(pools, settings.tenants_file), TenantDirectory(settings.tenants_file),
                    clients, lane)
    if lane.batch:  # clinician feedback concerns live Tasks: the real-time instance handles it
        return [StageSpec(name=BATCH_LANE.stage(AGENT), input_stream=BATCH_LANE.findings, handler=triage, **kw)]
    return [StageSpec(name=AGENT, input_stream=contracts.FINDINGS, handler=triage, **kw),
            StageSpec(name=f"{AGENT}-feedback", input_stream=contracts.FEEDBACK, handler=Feedback(pools),
                      types=Feedback.TYPES, **kw)]


async def build(settings: Settings, env: Mapping[str, str], lane: Lane = LANES[REALTIME]):
    await migrate(settings)
    pools = TenantPools(settings, SecretSettings.from_env(env))
    clients = AgentClients(GrpcSettings.from_env(env), sub=AGENT)
    return specs(pools, clients, settings, lane), [clients, pools]


if __name__ == "__main__":
    chosen = from_argv(sys.argv[1:])
    deprioritise(chosen)
    serve_stage(chosen.stage(AGENT), functools.partial(build, lane=chosen))
