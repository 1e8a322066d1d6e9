"""CreateStaffTask: a Task for the clinic staff with the conversation attached (Task.input
references to its Communications), through the action ledger, read back (an escalation the EHR
does not hold is retried, never recorded as done). The description is a fixed
sentence per reason code: no message text goes into the Task."""
from __future__ import annotations

from datetime import datetime, timezone

from services.core.errors import ValidationError, VigilError
from services.core.logging import get_logger
from services.tools.clients import check_id, ehr_refused
from services.tools.messages import read_back
from services.tools.scheduling_base import (ACTION_SYSTEM, CONVERSATION_SYSTEM, SchedulingDeps, action_result,
                                            fhir_instant)
from vigil.v1 import tools_pb2

log = get_logger("vigil.tools.staff_task")
TASK_CODE_SYSTEM = "urn:vigil:task-code"
TASK_CODE = "scheduling-review"
REASONS = {
    "urgent-symptoms": "Patient message in a scheduling conversation mentions possibly urgent symptoms.",
    "unparseable": "Scheduling conversation: the patient's request could not be understood.",
    "failed-attempts": "Scheduling conversation: repeated unsuccessful attempts to agree on a time.",
    "blocked-claim": "Scheduling assistant reply blocked: it claimed an action the action ledger does not show.",
    "booking-unverified": "Scheduling: a booking could not be verified in the EHR; please check and contact the patient.",
    "patient-request": "Scheduling conversation: the patient asked to speak with staff.",
    "engine-error": "Scheduling conversation could not continue automatically.",
    "no-availability": "Scheduling: no free slot in the requested window; please find a time with the patient.",
    "other-language": "Scheduling conversation: the patient wrote in a language not set up for automated replies.",
}
PRIORITIES = ("routine", "urgent", "asap", "stat")


class CreateStaffTask:
    def __init__(self, deps: SchedulingDeps):
        self.deps = deps

    async def __call__(self, request: tools_pb2.CreateStaffTaskRequest, context) -> tools_pb2.ActionResult:
        tenant = self.deps.tenant()
        patient_id = check_id("patient_id", request.patient_id)
        if request.reason not in REASONS:
            raise ValidationError(f"reason must be one of {sorted(REASONS)}", code="bad_reason")
        priority = request.priority or "routine"
        if priority not in PRIORITIES:
            raise ValidationError(f"priority must be one of {PRIORITIES}", code="bad_priority")
        communications = [check_id("communication_id", c) for c in request.communication_ids]
        key = request.idempotency_key
        identifiers = [{"system": ACTION_SYSTEM, "value": key}]
        if request.conversation_id:
            identifiers.append({"system": CONVERSATION_SYSTEM, "value": request.conversation_id})
        task = {
            "resourceType": "Task", "status": "requested", "intent": "order", "priority": priority,
            "identifier": identifiers,
            "code": {"coding": [{"system": TASK_CODE_SYSTEM, "code": TASK_CODE}], "text": "Scheduling review"},
            "businessStatus": {"text": request.reason},
            "description": REASONS[request.reason],
            "for": {"reference": f"Patient/{patient_id}"},
            "authoredOn": fhir_instant(datetime.now(timezone.utc)),
            "input": [{"type": {"text": "conversation-message"}, "valueReference": {"reference": f"Communication/{c}"}}
                      for c in communications],
        }
        if not task["input"]:
            del task["input"]
        client = await self.deps.fhir.client(tenant)

        async def perform(resumed: bool) -> dict:
            try:
                written = await client.create(task, if_none_exist=f"identifier={ACTION_SYSTEM}|{key}")
                await read_back(client, "Task", written.id)
            except VigilError as exc:
                raise ehr_refused(exc) from None
            return {"idempotency_key": key, "kind": "staff-task", "status": "verified", "patient_id": patient_id,
                    "resource_ref": f"Task/{written.id}", "version": str(written.version or ""),
                    "reason": request.reason}

        response, replayed = await self.deps.ledger.run(
            tenant.id, key, "staff-task", {"patient": patient_id, "reason": request.reason, "priority": priority,
                                           "communications": communications,
                                           "conversation": request.conversation_id}, perform)
        log.info("tools.staff_task", tenant=tenant.id, reason=request.reason, replayed=replayed)
        return action_result(response, replayed)
