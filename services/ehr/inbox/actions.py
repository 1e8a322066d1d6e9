"""Accept and Override: the clinician's decision written to the Task through the FHIR storage
path (validation, If-Match, version history, subscription hooks), like any EHR change."""
from __future__ import annotations

from services.ehr import interactions
from services.ehr.inbox import BUSINESS_STATUS_SYSTEM, OVERRIDE_SYSTEM
from services.ehr.outcome import bad_request
from services.ehr.storage import Stored, Tx, now_iso
from services.ehr.validation import validate

#: The short list the Override form offers (code -> label).
OVERRIDE_REASONS: dict[str, str] = {
    "not-present": "Finding not present in the note",
    "other-cause": "Attributed to another cause",
    "wrong-grade": "Grade is wrong",
    "already-managed": "Already known and managed",
    "not-relevant": "Not clinically relevant",
    "other": "Other (explain below)",
}
MAX_FREE_TEXT = 1000


def _business(code: str, display: str) -> dict:
    return {"coding": [{"system": BUSINESS_STATUS_SYSTEM, "code": code, "display": display}], "text": display}


async def decide(tx: Tx, task_id: str, version: int, practitioner: str, decision: str, reason: str | None = None,
                 free_text: str = "") -> Stored:
    """Apply ``accept`` or ``override`` to Task ``task_id`` at ``version`` (412 if it moved on)."""
    current = await tx.read("Task", task_id)
    task = dict(current.content)
    _, stamp = now_iso()
    author = {"reference": f"Practitioner/{practitioner}"}
    free_text = free_text.strip()[:MAX_FREE_TEXT]
    notes = list(task.get("note") or [])
    if decision == "accept":
        task["status"] = "completed"
        task["businessStatus"] = _business("accepted", "Accepted by clinician")
        task.pop("statusReason", None)
        notes.append({"authorReference": author, "time": stamp, "text": free_text or "accepted"})
    elif decision == "override":
        if reason not in OVERRIDE_REASONS:
            raise bad_request("Choose an override reason from the list")
        if reason == "other" and not free_text:
            raise bad_request("Explain the override in the text box when the reason is Other")
        task["status"] = "rejected"
        task["businessStatus"] = _business("overridden", "Overridden by clinician")
        task["statusReason"] = {"coding": [{"system": OVERRIDE_SYSTEM, "code": reason,
                                            "display": OVERRIDE_REASONS[reason]}], "text": OVERRIDE_REASONS[reason]}
        notes.append({"authorReference": author, "time": stamp, "text": free_text or reason})
    else:
        raise bad_request("Unknown decision")
    task["note"] = notes
    task["lastModified"] = stamp
    task.pop("meta", None)
    resource = validate({**task, "meta": {k: v for k, v in (current.content.get("meta") or {}).items()
                                          if k in ("security", "tag", "profile")}}, "Task")
    _, stored = await interactions.update(tx, "Task", task_id, resource, version)
    return stored
