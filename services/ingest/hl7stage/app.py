"""The hl7 stage: wiring and start-up.

    python -m services.ingest.hl7stage.app

Consumes ``hl7-inbound`` of every tenant in the registry (the messages the MLLP listener
acknowledged AA), emits ``ehr-events`` (notes, from Vigil's document store or the EHR copy) and
``lab-results``; keeps the patient index and the document store. Health and metrics on
VIGIL_METRICS_PORT. The listener never waits for this stage: it may lag, stop or be replaced
while the feed keeps being acknowledged.
"""
from __future__ import annotations

from typing import Mapping

from services.core.bus import StageSpec
from services.core.bus.service import serve_stage
from services.core.config import Settings
from services.ingest.hl7stage.deps import Hl7Deps
from services.ingest.hl7stage.handler import STAGE, Hl7Stage
from services.ingest.mllp.pipeline import HL7_INBOUND


def specs(deps: Hl7Deps, **kw) -> list[StageSpec]:
    """The stage's one spec (``kw``: retry / tuning overrides, for tests)."""
    return [StageSpec(name=STAGE, input_stream=HL7_INBOUND, handler=Hl7Stage(deps), **kw)]


async def build(settings: Settings, env: Mapping[str, str]):
    deps = Hl7Deps(settings)
    return specs(deps), [deps]


if __name__ == "__main__":
    serve_stage(STAGE, build)
