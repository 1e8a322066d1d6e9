"""GetAction: what the action ledger holds for an idempotency key (NOT_FOUND when nothing).
Agents render confirmations from this, never from their own text."""
from __future__ import annotations

from services.core.errors import NotFoundError
from services.tools.scheduling_base import SchedulingDeps, action_result
from vigil.v1 import tools_pb2


class GetAction:
    def __init__(self, deps: SchedulingDeps):
        self.deps = deps

    async def __call__(self, request: tools_pb2.GetActionRequest, context) -> tools_pb2.ActionResult:
        tenant = self.deps.tenant()
        row = await self.deps.ledger.get(tenant.id, request.idempotency_key)
        if row is None:
            raise NotFoundError("no action with this idempotency key", code="unknown_action")
        return action_result(row, replayed=True)
