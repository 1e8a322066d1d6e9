"""The extraction stage: wiring and start-up.

    python -m services.extraction.app

Consumes ``ehr-events`` of every tenant in the registry (``services.core.bus.service``), calls
tools (VIGIL_GRPC_TOOLS_ADDR) and inference (VIGIL_GRPC_INFERENCE_ADDR) with its own service
credential (``VIGIL_GRPC_TOKEN_*``), emits ``findings``. Health and metrics on VIGIL_METRICS_PORT.
"""
from __future__ import annotations

from typing import Mapping

from services.core.agentclients import AgentClients
from services.core.bus import StageSpec
from services.core.bus.service import serve_stage
from services.core.config import Settings
from services.core.grpc import GrpcSettings
from services.extraction.handler import STAGE, Extraction


def specs(clients: AgentClients, **kw) -> list[StageSpec]:
    """The stage's one spec (``kw``: retry / tuning overrides, for tests)."""
    return [StageSpec(name=STAGE, input_stream="ehr-events", handler=Extraction(clients), **kw)]


async def build(settings: Settings, env: Mapping[str, str]):
    clients = AgentClients(GrpcSettings.from_env(env), sub=STAGE)
    return specs(clients), [clients]


if __name__ == "__main__":
    serve_stage(STAGE, build)
