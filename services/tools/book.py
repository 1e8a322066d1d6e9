"""Book: ``Appointment/$book`` through the action ledger, then a read-back of the Appointment and
its Slot. Only a booking the EHR verifiably holds (status booked, the patient a participant, the
slot referenced and busy, the start equal to the slot's) is ``verified``; a booking that answered
success but cannot be read back is ``unverified`` and must never be confirmed to the patient."""
from __future__ import annotations

from services.core.errors import ConflictError, NotFoundError, ValidationError, VigilError
from services.core.logging import get_logger
from services.tools.clients import check_id, ehr_refused
from services.tools.scheduling_base import (ACTION_SYSTEM, SchedulingDeps, action_result, has_patient,
                                            same_instant)
from vigil.v1 import tools_pb2

log = get_logger("vigil.tools.book")
DESCRIPTION_CODES = frozenset({"", "irae-followup", "patient-request", "reschedule"})


async def verify_booking(client, appointment_id: str, slot_id: str, patient_id: str) -> tuple[str, dict]:
    """(reason or "", appointment) from reading the Appointment and its Slot back."""
    try:
        appointment = await client.read("Appointment", appointment_id)
        slot = await client.read("Slot", slot_id)
    except NotFoundError:
        return "not_read_back", {}
    if appointment.get("status") != "booked":
        return "not_booked", appointment
    if not has_patient(appointment, patient_id):
        return "wrong_patient", appointment
    if f"Slot/{slot_id}" not in [s.get("reference") for s in appointment.get("slot") or ()]:
        return "wrong_slot", appointment
    if slot.get("status") != "busy":
        return "slot_not_busy", appointment
    if not same_instant(appointment.get("start") or "", slot.get("start") or ""):
        return "wrong_time", appointment
    return "", appointment


class Book:
    def __init__(self, deps: SchedulingDeps):
        self.deps = deps

    async def __call__(self, request: tools_pb2.BookRequest, context) -> tools_pb2.ActionResult:
        tenant = self.deps.tenant()
        slot_id, patient_id = check_id("slot_id", request.slot_id), check_id("patient_id", request.patient_id)
        if request.description not in DESCRIPTION_CODES:
            raise ValidationError(f"description must be one of {sorted(DESCRIPTION_CODES)}", code="bad_description")
        key = request.idempotency_key
        client = await self.deps.fhir.client(tenant)
        ledger_request = {"slot": slot_id, "patient": patient_id, "holder": request.holder,
                          "replaces": request.replaces_appointment_id, "description": request.description}

        async def perform(resumed: bool) -> dict:
            base = {"idempotency_key": key, "kind": "book", "slot_id": slot_id, "patient_id": patient_id}
            try:
                existing = await client.search("Appointment", {"identifier": f"{ACTION_SYSTEM}|{key}"})
                if existing:                      # an earlier attempt with this key reached the EHR
                    return await self._verified(client, base, existing[0]["id"], slot_id, patient_id)
                holder = await self.deps.holds.holder(tenant.id, slot_id)
                if holder and holder != request.holder:
                    return {**base, "status": "conflict", "reason": "held_by_other"}
                try:
                    slot = await client.read("Slot", slot_id)
                except NotFoundError:
                    return {**base, "status": "failed", "reason": "unknown_slot"}
                if slot.get("status") != "free":
                    return {**base, "status": "conflict", "reason": "slot_taken"}
                schedule_ref = (slot.get("schedule") or {}).get("reference", "")
                schedule = await client.read("Schedule", schedule_ref.split("/", 1)[1]) if "/" in schedule_ref else {}
                appointment = {
                    "resourceType": "Appointment", "status": "booked",
                    "identifier": [{"system": ACTION_SYSTEM, "value": key}],
                    "slot": [{"reference": f"Slot/{slot_id}"}], "start": slot["start"], "end": slot["end"],
                    "participant": [{"actor": {"reference": f"Patient/{patient_id}"}, "status": "accepted"}]
                    + [{"actor": a, "status": "accepted"} for a in schedule.get("actor") or ()],
                }
                if slot.get("serviceType"):
                    appointment["serviceType"] = slot["serviceType"]
                if request.description:
                    appointment["description"] = request.description
                try:
                    booked = await client.book(appointment)
                except ConflictError:
                    return {**base, "status": "conflict", "reason": "slot_taken"}
                return await self._verified(client, base, booked.get("id") or "", slot_id, patient_id)
            except VigilError as exc:
                raise ehr_refused(exc) from None

        response, replayed = await self.deps.ledger.run(tenant.id, key, "book", ledger_request, perform)
        if response["status"] == "verified" and request.holder:
            await self.deps.holds.release(tenant.id, slot_id, request.holder)
        log.info("tools.book", tenant=tenant.id, status=response["status"], reason=response.get("reason", ""),
                 replayed=replayed)
        return action_result(response, replayed)

    @staticmethod
    async def _verified(client, base: dict, appointment_id: str, slot_id: str, patient_id: str) -> dict:
        if not appointment_id:
            return {**base, "status": "unverified", "reason": "no_id"}
        reason, appointment = await verify_booking(client, appointment_id, slot_id, patient_id)
        meta = appointment.get("meta") or {}
        out = {**base, "resource_ref": f"Appointment/{appointment_id}", "version": str(meta.get("versionId") or "")}
        if reason:
            return {**out, "status": "unverified", "reason": reason}
        return {**out, "status": "verified", "start": appointment["start"], "end": appointment.get("end", "")}
