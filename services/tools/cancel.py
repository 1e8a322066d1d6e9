"""Cancel: the patient's Appointment set to cancelled and its Slots freed, through the action
ledger, then read back (status cancelled) before the result is ``verified``."""
from __future__ import annotations

from services.core.errors import ConflictError, NotFoundError, VigilError
from services.core.logging import get_logger
from services.tools.clients import check_id, ehr_refused
from services.tools.scheduling_base import SchedulingDeps, action_result, has_patient
from vigil.v1 import tools_pb2

log = get_logger("vigil.tools.cancel")


class Cancel:
    def __init__(self, deps: SchedulingDeps):
        self.deps = deps

    async def __call__(self, request: tools_pb2.CancelRequest, context) -> tools_pb2.ActionResult:
        tenant = self.deps.tenant()
        appointment_id = check_id("appointment_id", request.appointment_id)
        patient_id = check_id("patient_id", request.patient_id)
        key = request.idempotency_key
        client = await self.deps.fhir.client(tenant)

        async def perform(resumed: bool) -> dict:
            base = {"idempotency_key": key, "kind": "cancel", "patient_id": patient_id,
                    "resource_ref": f"Appointment/{appointment_id}"}
            try:
                try:
                    appointment = await client.read("Appointment", appointment_id)
                except NotFoundError:
                    return {**base, "status": "failed", "reason": "unknown_appointment"}
                if not has_patient(appointment, patient_id):
                    return {**base, "status": "failed", "reason": "not_this_patient"}
                if appointment.get("status") != "cancelled":
                    version = (appointment.get("meta") or {}).get("versionId")
                    try:
                        await client.update({**appointment, "status": "cancelled",
                                             "cancelationReason": {"text": "patient-request"}}, if_match=version)
                    except ConflictError:
                        return {**base, "status": "conflict", "reason": "changed_concurrently"}
                    for ref in appointment.get("slot") or ():
                        slot_id = (ref.get("reference") or "").split("/", 1)[-1]
                        slot = await client.read("Slot", slot_id)
                        if slot.get("status") == "busy":
                            await client.update({**slot, "status": "free"},
                                                if_match=(slot.get("meta") or {}).get("versionId"))
                try:
                    after = await client.read("Appointment", appointment_id)
                except NotFoundError:
                    return {**base, "status": "unverified", "reason": "not_read_back"}
                slot_ref = ((after.get("slot") or [{}])[0]).get("reference", "")
                out = {**base, "version": str((after.get("meta") or {}).get("versionId") or ""),
                       "start": after.get("start", ""), "end": after.get("end", ""),
                       "slot_id": slot_ref.split("/", 1)[-1]}
                if after.get("status") != "cancelled":
                    return {**out, "status": "unverified", "reason": "not_cancelled"}
                return {**out, "status": "verified"}
            except VigilError as exc:
                raise ehr_refused(exc) from None

        response, replayed = await self.deps.ledger.run(tenant.id, key, "cancel",
                                                        {"appointment": appointment_id, "patient": patient_id},
                                                        perform)
        log.info("tools.cancel", tenant=tenant.id, status=response["status"], replayed=replayed)
        return action_result(response, replayed)
