"""The writeback service: wiring and start-up.

    python -m services.writeback.app

Runs the ``writeback`` stage for every tenant in the registry
(``services.core.bus.service.StageHost``: one runner per tenant, /healthz /readyz /metrics on
VIGIL_METRICS_PORT): it consumes ``actions`` (``vigil.triage.decision``), writes Tasks into the
tenant's EHR (``handler.Writeback``) and emits ``vigil.writeback.task-written`` on ``feedback``
(not on ``actions``: the stage would fetch its own output back).
(Clinicians' actions become labels in the monitor, ``services.monitor.feedback``.)

Each tenant's EHR client is SMART Backend Services with the tenant's writeback credentials
(``services.core.ehraccess.EhrClients``), its own connection pool, its CapabilityStatement read when first used.
"""
from __future__ import annotations

from typing import Mapping

from services.core import contracts
from services.core.bus import StageSpec
from services.core.bus.service import serve_stage
from services.core.config import Settings
from services.writeback.deps import Deps
from services.writeback.handler import DECISION_TYPE, STAGE, Writeback


def specs(deps: Deps, **kw) -> list[StageSpec]:
    """The stage's spec (``kw``: retry / tuning overrides, for tests)."""
    return [StageSpec(name=STAGE, input_stream=contracts.ACTIONS, handler=Writeback(deps),
                      types=frozenset({DECISION_TYPE}), **kw)]


async def build(settings: Settings, env: Mapping[str, str]):
    deps = Deps(settings)
    return specs(deps), [deps]


if __name__ == "__main__":
    serve_stage(STAGE, build)
