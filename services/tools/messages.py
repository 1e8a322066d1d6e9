"""SendMessage (a Communication to the patient, through the action ledger, created conditionally on
its idempotency key and read back; a write the EHR does not hold is retryable) and GetMessage
(a patient's Communication: text and whether the patient sent it).

The ledger records the message's sha256 and length, never its text."""
from __future__ import annotations

import hashlib
from datetime import datetime, timezone

from services.core.errors import NotFoundError, RetryableError, ValidationError, VigilError
from services.core.logging import get_logger
from services.tools.clients import check_id, ehr_refused
from services.tools.scheduling_base import (ACTION_SYSTEM, CONVERSATION_SYSTEM, SchedulingDeps, action_result,
                                            fhir_instant)
from vigil.v1 import tools_pb2

log = get_logger("vigil.tools.messages")
MAX_MESSAGE_CHARS = 2000
SENDER_DISPLAY = "Clinic scheduling"


class SendMessage:
    def __init__(self, deps: SchedulingDeps):
        self.deps = deps

    async def __call__(self, request: tools_pb2.SendMessageRequest, context) -> tools_pb2.ActionResult:
        tenant = self.deps.tenant()
        patient_id = check_id("patient_id", request.patient_id)
        if not request.text.strip() or len(request.text) > MAX_MESSAGE_CHARS:
            raise ValidationError(f"text must be 1-{MAX_MESSAGE_CHARS} characters", code="bad_text")
        if request.in_response_to:
            check_id("in_response_to", request.in_response_to)
        key = request.idempotency_key
        client = await self.deps.fhir.client(tenant)
        identifiers = [{"system": ACTION_SYSTEM, "value": key}]
        if request.conversation_id:
            identifiers.append({"system": CONVERSATION_SYSTEM, "value": request.conversation_id})
        communication = {
            "resourceType": "Communication", "status": "completed", "identifier": identifiers,
            "category": [{"text": "scheduling"}],
            "subject": {"reference": f"Patient/{patient_id}"},
            "recipient": [{"reference": f"Patient/{patient_id}"}],
            "sender": {"display": SENDER_DISPLAY},
            "sent": fhir_instant(datetime.now(timezone.utc)),
            "payload": [{"contentString": request.text}],
        }
        if request.in_response_to:
            communication["inResponseTo"] = [{"reference": f"Communication/{request.in_response_to}"}]

        async def perform(resumed: bool) -> dict:
            try:
                written = await client.create(communication, if_none_exist=f"identifier={ACTION_SYSTEM}|{key}")
                await read_back(client, "Communication", written.id)
            except VigilError as exc:
                raise ehr_refused(exc) from None
            return {"idempotency_key": key, "kind": "message", "status": "verified", "patient_id": patient_id,
                    "resource_ref": f"Communication/{written.id}", "version": str(written.version or "")}

        ledger_request = {"patient": patient_id, "conversation": request.conversation_id,
                          "in_response_to": request.in_response_to, "chars": len(request.text),
                          "sha256": hashlib.sha256(request.text.encode()).hexdigest()}
        response, replayed = await self.deps.ledger.run(tenant.id, key, "message", ledger_request, perform)
        log.info("tools.message_sent", tenant=tenant.id, replayed=replayed)
        return action_result(response, replayed)


async def read_back(client, rtype: str, rid: str | None) -> None:
    """A write the EHR acknowledged but does not hold is retried (the ledger row stays pending)."""
    try:
        if not rid:
            raise NotFoundError("no id", code="no_id")
        await client.read(rtype, rid)
    except NotFoundError:
        raise RetryableError(f"the {rtype} was acknowledged but cannot be read back", code="not_read_back") from None


def message_text(resource: dict) -> str:
    parts = []
    for payload in resource.get("payload") or ():
        if isinstance(payload.get("contentString"), str):
            parts.append(payload["contentString"])
    return "\n".join(parts)


class GetMessage:
    def __init__(self, deps: SchedulingDeps):
        self.deps = deps

    async def __call__(self, request: tools_pb2.GetMessageRequest, context) -> tools_pb2.PatientMessage:
        tenant = self.deps.tenant()
        communication_id = check_id("communication_id", request.communication_id)
        client = await self.deps.fhir.client(tenant)
        try:
            if request.version:
                resource = await client.vread("Communication", communication_id, check_id("version", request.version))
            else:
                resource = await client.read("Communication", communication_id)
        except NotFoundError:
            raise
        except VigilError as exc:
            raise ehr_refused(exc) from None
        subject = (resource.get("subject") or {}).get("reference", "")
        sender = (resource.get("sender") or {}).get("reference", "")
        return tools_pb2.PatientMessage(
            communication_id=communication_id, version=str((resource.get("meta") or {}).get("versionId") or ""),
            patient_id=subject.split("/", 1)[1] if subject.startswith("Patient/") else "",
            from_patient=bool(subject.startswith("Patient/") and sender == subject),
            text=message_text(resource), sent=resource.get("sent") or "")
