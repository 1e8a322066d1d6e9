"""HoldSlot / ReleaseSlot: a conversation's claim on a slot while the patient decides."""
from __future__ import annotations

from services.core.errors import ValidationError
from services.tools.clients import check_id
from services.tools.holds import DEFAULT_HOLD_S, MAX_HOLD_S
from services.tools.scheduling_base import SchedulingDeps
from vigil.v1 import tools_pb2


def _holder(request) -> str:
    if not request.holder or len(request.holder) > 128 or not request.holder.isprintable():
        raise ValidationError("holder must be 1-128 printable characters (the conversation id)", code="bad_holder")
    return request.holder


class HoldSlot:
    def __init__(self, deps: SchedulingDeps):
        self.deps = deps

    async def __call__(self, request: tools_pb2.HoldSlotRequest, context) -> tools_pb2.SlotHold:
        tenant = self.deps.tenant()
        slot_id, holder = check_id("slot_id", request.slot_id), _holder(request)
        ttl = request.ttl_seconds or DEFAULT_HOLD_S
        if not 1 <= ttl <= MAX_HOLD_S:
            raise ValidationError(f"ttl_seconds must be 1..{MAX_HOLD_S}", code="bad_ttl")
        held = await self.deps.holds.hold(tenant.id, slot_id, holder, ttl)
        return tools_pb2.SlotHold(slot_id=slot_id, held=held, ttl_seconds=ttl if held else 0)


class ReleaseSlot:
    def __init__(self, deps: SchedulingDeps):
        self.deps = deps

    async def __call__(self, request: tools_pb2.HoldSlotRequest, context) -> tools_pb2.SlotHold:
        tenant = self.deps.tenant()
        slot_id, holder = check_id("slot_id", request.slot_id), _holder(request)
        released = await self.deps.holds.release(tenant.id, slot_id, holder)
        return tools_pb2.SlotHold(slot_id=slot_id, held=released, ttl_seconds=0)
