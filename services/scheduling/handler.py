"""The stage handlers: follow-up requests (``scheduling`` stream) open conversations; patient
Communications (``ehr-events``) are the next turn; a changed Appointment of a patient
(``ehr-events``, from the appointment subscription) is checked against the conversation. Each message sent becomes a
``vigil.scheduling.message`` event on ``actions`` (a reference to the Communication, never text)."""
from __future__ import annotations

from services.core import contracts
from services.core.events import Event
from services.scheduling.agent import SchedulingAgent, TurnResult

AGENT = "scheduling"
FOLLOWUP_TYPE = contracts.FOLLOWUP_REQUEST
CHANGED_TYPE = contracts.RESOURCE_CHANGED
MESSAGE_TYPE = contracts.SCHEDULING_MESSAGE


def _emit(ctx, result: TurnResult) -> None:
    for communication in result.sent:
        ctx.emit(contracts.ACTIONS, ctx.child(MESSAGE_TYPE, {
            "conversationId": result.conversation_id, "patient": result.patient,
            "text": {"reference": f"Communication/{communication}"}}, key=result.patient))


class FollowupRequests:
    def __init__(self, agent: SchedulingAgent):
        self.agent = agent

    async def __call__(self, event: Event, ctx) -> None:
        if event.type != FOLLOWUP_TYPE:
            return
        _emit(ctx, await self.agent.start(ctx.tenant, event.data, message_key=event.id))


class PatientMessages:
    def __init__(self, agent: SchedulingAgent):
        self.agent = agent

    async def __call__(self, event: Event, ctx) -> None:
        data = event.data
        if event.type != CHANGED_TYPE:
            return
        if data.get("resourceType") == "Appointment" and data.get("patient"):
            # the appointment subscription: staff-side changes are told to the patient once
            _emit(ctx, await self.agent.on_appointment(ctx.tenant, data["id"], str(data.get("versionId") or ""),
                                                       data["patient"]))
            return
        if data.get("resourceType") != "Communication" or data.get("action") == "delete":
            return
        _emit(ctx, await self.agent.on_message(ctx.tenant, data["id"], str(data.get("versionId") or "")))
