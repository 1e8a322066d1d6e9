"""The agent's door to the EHR: the tools gRPC service, called with the agent's own credential
for the tenant (``services.core.agentclients``). Engines use only this."""
from __future__ import annotations

from services.core.agentclients import AgentClients
from vigil.v1 import tools_pb2


class Toolbox:
    def __init__(self, clients: AgentClients, tenant: str):
        self.clients, self.tenant = clients, tenant

    async def _call(self, method: str, request):
        return await self.clients.call("tools", self.tenant, method, request)

    async def find_slots(self, **kw) -> list[tools_pb2.SlotOffer]:
        return list((await self._call("FindSlots", tools_pb2.FindSlotsRequest(**kw))).slots)

    async def hold(self, slot_id: str, holder: str, ttl_s: int) -> bool:
        return (await self._call("HoldSlot", tools_pb2.HoldSlotRequest(slot_id=slot_id, holder=holder,
                                                                        ttl_seconds=ttl_s))).held

    async def release(self, slot_id: str, holder: str) -> None:
        await self._call("ReleaseSlot", tools_pb2.HoldSlotRequest(slot_id=slot_id, holder=holder))

    async def book(self, key: str, slot_id: str, patient: str, holder: str, replaces: str = "",
                   description: str = "") -> tools_pb2.ActionResult:
        return await self._call("Book", tools_pb2.BookRequest(idempotency_key=key, slot_id=slot_id, patient_id=patient,
                                                              holder=holder, replaces_appointment_id=replaces,
                                                              description=description))

    async def cancel(self, key: str, appointment_id: str, patient: str) -> tools_pb2.ActionResult:
        return await self._call("Cancel", tools_pb2.CancelRequest(idempotency_key=key, appointment_id=appointment_id,
                                                                  patient_id=patient))

    async def appointments(self, patient: str) -> list[tools_pb2.AppointmentInfo]:
        return list((await self._call("ListAppointments",
                                      tools_pb2.ListAppointmentsRequest(patient_id=patient))).appointments)

    async def send(self, key: str, patient: str, text: str, conversation: str, in_response_to: str = "") \
            -> tools_pb2.ActionResult:
        return await self._call("SendMessage", tools_pb2.SendMessageRequest(
            idempotency_key=key, patient_id=patient, text=text, conversation_id=conversation,
            in_response_to=in_response_to))

    async def message(self, communication_id: str, version: str = "") -> tools_pb2.PatientMessage:
        return await self._call("GetMessage", tools_pb2.GetMessageRequest(communication_id=communication_id,
                                                                          version=version))

    async def staff_task(self, key: str, patient: str, reason: str, priority: str, communications: list[str],
                         conversation: str) -> tools_pb2.ActionResult:
        return await self._call("CreateStaffTask", tools_pb2.CreateStaffTaskRequest(
            idempotency_key=key, patient_id=patient, reason=reason, priority=priority,
            communication_ids=communications, conversation_id=conversation))

    async def action(self, key: str) -> tools_pb2.ActionResult:
        return await self._call("GetAction", tools_pb2.GetActionRequest(idempotency_key=key))
