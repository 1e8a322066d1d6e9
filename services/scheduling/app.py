"""The scheduling stage: wiring and start-up.

    python -m services.scheduling.app

Two stage specs per tenant (``services.core.bus.service``): ``scheduling`` consumes follow-up
requests on ``scheduling``; ``scheduling-messages`` consumes ``ehr-events`` and takes patients'
Communications. Both emit ``vigil.scheduling.message`` on ``actions``. Conversation state lives in
Redis (tenant ACL client, encrypted with the tenant's key); tools are called over gRPC
(VIGIL_GRPC_TOOLS_ADDR) with the stage's own credential. Tenants choose the engine with
``settings.scheduling_engine`` (dialogue | llm). The llm engine's model calls go through the
inference service (VIGIL_GRPC_INFERENCE_ADDR, ``Chat``), which reads the endpoint
(``scheduling_llm_*``, ``services.inference.llm.config``) and counts every call in its cost ledger.
"""
from __future__ import annotations

from typing import Mapping

from services.core import contracts
from services.core import crypto
from services.core.agentclients import AgentClients
from services.core.bus import StageSpec
from services.core.bus.service import serve_stage
from services.core.config import Settings
from services.core.crypto import Keyring
from services.core.db import create_pool, ensure_schema
from services.core.grpc.settings import GrpcSettings
from services.core.secrets import SecretSettings
from services.core.tenantdb import TenantPools
from services.core.tenantdir import TenantDirectory
from services.scheduling.agent import SchedulingAgent
from services.scheduling.consent import ConsentLedger
from services.scheduling.handler import AGENT, FollowupRequests, PatientMessages
from services.scheduling.llm_engine import LlmEngine
from services.scheduling.state import ConversationStore

class Resources:
    def __init__(self, *closables):
        self.closables = closables

    async def close(self) -> None:
        for c in self.closables:
            await c.close()


async def migrate(settings: Settings) -> None:
    pool = await create_pool(settings, min_size=1, max_size=1)
    try:
        await ensure_schema(pool, crypto.SCHEMA_MODULE, crypto.SCHEMA_STEPS)
    finally:
        await pool.close()


def build_agent(settings: Settings, pools: TenantPools, clients: AgentClients, *,
                clock=None) -> tuple[SchedulingAgent, ConversationStore]:
    store = ConversationStore(settings, Keyring(pools, pools.secrets), pools.secrets)
    llm = LlmEngine(clients)      # model calls go through inference.Chat, counted in its cost ledger
    agent = SchedulingAgent(clients, store, TenantDirectory(settings.tenants_file),
                            consents=ConsentLedger(clients), llm_engines=lambda tenant: llm, clock=clock)
    return agent, store


def specs(agent: SchedulingAgent, **kw) -> list[StageSpec]:
    return [StageSpec(name=AGENT, input_stream=contracts.SCHEDULING, handler=FollowupRequests(agent), **kw),
            StageSpec(name=f"{AGENT}-messages", input_stream=contracts.EHR_EVENTS, handler=PatientMessages(agent),
                      **kw)]


async def build(settings: Settings, env: Mapping[str, str]):
    await migrate(settings)
    secrets = SecretSettings.from_env(env)
    pools = TenantPools(settings, secrets)
    clients = AgentClients(GrpcSettings.from_env(env), sub=AGENT)
    agent, store = build_agent(settings, pools, clients)
    return specs(agent), [Resources(store, clients, pools)]


if __name__ == "__main__":
    serve_stage(AGENT, build)
