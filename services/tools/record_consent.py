"""RecordConsent: the patient's unambiguous yes, in the action ledger before the action it allows.

Kind ``consent``: the patient's Communication (reference and sha256, never its text), the agent's
message it answered, and what it agreed to (action, slot, start, appointment). Idempotent by key
like every ledger write; the action's own key shares the prefix, so the ledger links the two."""
from __future__ import annotations

import re

from services.core.errors import ValidationError
from services.tools.scheduling_base import SchedulingDeps, action_result
from vigil.v1 import tools_pb2

ACTIONS = ("book", "reschedule", "cancel")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
MAX_FIELD = 200


class RecordConsent:
    def __init__(self, deps: SchedulingDeps):
        self.deps = deps

    async def __call__(self, request: tools_pb2.RecordConsentRequest, context) -> tools_pb2.ActionResult:
        tenant = self.deps.tenant()
        if request.action not in ACTIONS:
            raise ValidationError(f"action must be one of {', '.join(ACTIONS)}", code="bad_action")
        if not request.idempotency_key or not request.reply_ref or not SHA256.match(request.reply_sha256):
            raise ValidationError("idempotency_key, reply_ref and reply_sha256 are required", code="bad_consent")
        fields = (request.idempotency_key, request.conversation_id, request.reply_ref, request.asked_ref,
                  request.slot_id, request.start, request.appointment_id)
        if any(len(f) > MAX_FIELD for f in fields):
            raise ValidationError(f"consent fields are at most {MAX_FIELD} characters", code="bad_consent")
        record = {"conversation": request.conversation_id, "reply": request.reply_ref, "asked": request.asked_ref,
                  "action": request.action, "slot": request.slot_id, "start": request.start,
                  "appointment": request.appointment_id, "reply_sha256": request.reply_sha256}
        appointment = request.appointment_id

        async def perform(resumed: bool) -> dict:
            return {"idempotency_key": request.idempotency_key, "kind": "consent", "status": "verified",
                    "slot_id": request.slot_id, "start": request.start,
                    "resource_ref": f"Appointment/{appointment}" if appointment else "", "reason": request.action}

        response, replayed = await self.deps.ledger.run(tenant.id, request.idempotency_key, "consent", record, perform)
        return action_result(response, replayed=replayed)
