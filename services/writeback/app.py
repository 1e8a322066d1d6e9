"""The writeback service: wiring and start-up.

    python -m services.writeback.app

Runs two stages for every tenant in the registry (``services.core.bus.service.StageHost``:
one runner per tenant and stage, /healthz /readyz /metrics on VIGIL_METRICS_PORT):

- ``writeback`` consumes ``actions`` (``vigil.triage.decision``) and writes Tasks into the
  tenant's EHR (``handler.Writeback``); emits ``vigil.writeback.task-written`` on ``actions``;
- ``feedback`` consumes ``feedback`` (``vigil.ehr.task-updated``) and stores labels
  (``feedback.Feedback``).

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
from services.writeback.feedback import STAGE as FEEDBACK_STAGE, Feedback
from services.writeback.handler import STAGE, Writeback


def specs(deps: Deps, **kw) -> list[StageSpec]:
    """The two specs (``kw``: retry / tuning overrides, for tests)."""
    return [StageSpec(name=STAGE, input_stream=contracts.ACTIONS, handler=Writeback(deps), **kw),
            StageSpec(name=FEEDBACK_STAGE, input_stream=contracts.FEEDBACK, handler=Feedback(deps), **kw)]


async def build(settings: Settings, env: Mapping[str, str]):
    deps = Deps(settings)
    return specs(deps), [deps]


if __name__ == "__main__":
    serve_stage(STAGE, build)
