"""The hl7out service: wiring and start-up.

    python -m services.hl7out.app

One stage, ``hl7out``, for every tenant in the registry (``services.core.bus.service.StageHost``;
/healthz /readyz /metrics on VIGIL_METRICS_PORT). It consumes ``actions`` - the stream writeback
reads - and routes by event type through ``HANDLERS``, its one table; a tenant whose integration
profile does not deliver ``hl7v2`` has its events committed untouched. Retries, dead letters and
replay are the stage runtime's (``VIGIL_RETRY_BACKOFF_S``, ``VIGIL_RETRY_QUICK_ATTEMPTS``).
"""
from __future__ import annotations

from typing import Awaitable, Callable, Mapping

from services.core import contracts
from services.core.bus import StageSpec
from services.core.bus.service import serve_stage
from services.core.config import Settings
from services.hl7out.deps import Deps
from services.hl7out.handler import DECISION_TYPE, STAGE, deliver

#: event type -> handler(deps, event, ctx). Other types on ``actions`` (scheduling) are passed over.
HANDLERS: dict[str, Callable[..., Awaitable[None]]] = {
    DECISION_TYPE: deliver,
}


class Hl7OutStage:
    def __init__(self, deps: Deps):
        self.deps = deps

    async def __call__(self, event, ctx) -> None:
        handler = HANDLERS.get(event.type)
        if handler is not None:
            await handler(self.deps, event, ctx)


def specs(deps: Deps, **kw) -> list[StageSpec]:
    """The stage's spec (``kw``: retry / tuning overrides, for tests)."""
    return [StageSpec(name=STAGE, input_stream=contracts.ACTIONS, handler=Hl7OutStage(deps),
                      types=frozenset(HANDLERS), **kw)]


async def build(settings: Settings, env: Mapping[str, str]):
    deps = Deps(settings)
    return specs(deps), [deps]


if __name__ == "__main__":
    serve_stage(STAGE, build)
