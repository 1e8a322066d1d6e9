"""Events ingest publishes: references to EHR resources, never their content.

``vigil.ehr.resource-changed`` goes to ``ehr-events``; a changed Task becomes
``vigil.ehr.task-updated`` on ``feedback``. Event ids are deterministic in (tenant,
resource type, id, version) so the same version reached by two paths has one id.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

from services.core import contracts, vigiltasks
from services.core.events import Event, deterministic_id

RESOURCE_CHANGED = contracts.RESOURCE_CHANGED
TASK_UPDATED = contracts.TASK_UPDATED
EHR_EVENTS = contracts.EHR_EVENTS
FEEDBACK = contracts.FEEDBACK
PUBLISHED_TYPES = ("DocumentReference", "Task", "Communication", "Appointment", "Encounter", "Patient")
#: Where the patient reference lives, per resource type.
PATIENT_PATHS = {"DocumentReference": ("subject",), "Task": ("for",), "Communication": ("subject",),
                 "Encounter": ("subject",), "Appointment": ("participant",)}
#: Decision ids a task-updated event carries at most (an episode Task gathers one per decision).
MAX_DECISIONS = 200
REASON_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")


@dataclass(frozen=True)
class Ref:
    """One version of one resource (what an event points at)."""

    resource_type: str
    id: str
    version_id: str
    last_updated: str
    patient: str | None

    def as_dict(self) -> dict:
        return {"resourceType": self.resource_type, "id": self.id, "versionId": self.version_id}


def _patient_id(reference: str | None) -> str | None:
    if not reference or not isinstance(reference, str):
        return None
    parts = reference.split("/")
    if len(parts) >= 2 and parts[-2] == "Patient":
        return parts[-1] or None
    if len(parts) >= 4 and parts[-4] == "Patient" and parts[-2] == "_history":
        return parts[-3] or None
    return None


def patient_of(resource: dict) -> str | None:
    rtype = resource.get("resourceType")
    if rtype == "Patient":
        return resource.get("id")
    if rtype == "Appointment":
        for participant in resource.get("participant") or []:
            found = _patient_id(((participant or {}).get("actor") or {}).get("reference"))
            if found:
                return found
        return None
    for path in PATIENT_PATHS.get(rtype, ()):
        found = _patient_id(((resource.get(path) or {}) if isinstance(resource.get(path), dict) else {})
                            .get("reference"))
        if found:
            return found
    return None


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def ref_of(resource: dict) -> Ref:
    meta = resource.get("meta") or {}
    version = meta.get("versionId")
    if not resource.get("id") or not version:
        raise ValueError("resource has no id or meta.versionId")
    return Ref(resource["resourceType"], str(resource["id"]), str(version), meta.get("lastUpdated") or now_iso(),
               patient_of(resource))


def resource_changed(tenant: str, ref: Ref, *, action: str, origin: str, subscription: str | None = None,
                     event_number: int | None = None) -> Event:
    data = {"resourceType": ref.resource_type, "id": ref.id, "versionId": ref.version_id, "patient": ref.patient,
            "action": action, "origin": origin, "lastUpdated": ref.last_updated}
    if subscription is not None:
        data["subscription"] = subscription
    if event_number is not None:
        data["eventNumber"] = event_number
    return Event.new(RESOURCE_CHANGED, source=f"/ingest/{tenant}", tenant=tenant, key=ref.patient, data=data,
                     id=deterministic_id(tenant, RESOURCE_CHANGED, ref.resource_type, ref.id, ref.version_id),
                     subject=f"{ref.resource_type}/{ref.id}/_history/{ref.version_id}")


def _code_text(concept) -> str | None:
    if not isinstance(concept, dict):
        return None
    for coding in concept.get("coding") or []:
        if isinstance(coding, dict) and coding.get("code"):
            return str(coding["code"])
    text = concept.get("text")
    return str(text) if text else None


def task_updated(tenant: str, task: dict) -> Event:
    """The clinician's action on a Task: status, reason code; the note only as a short code."""
    ref = ref_of(task)
    if not ref.patient:
        raise ValueError("Task has no Patient in Task.for")
    notes = [str(n.get("text")).strip() for n in task.get("note") or [] if isinstance(n, dict) and n.get("text")]
    # Free text may hold PHI: a note travels only when it is a short reason code.
    note = notes[-1] if notes and REASON_CODE.match(notes[-1]) else None
    data = {"task": {"id": ref.id, "versionId": ref.version_id}, "patient": ref.patient,
            "status": str(task.get("status") or "unknown"), "statusReason": _code_text(task.get("statusReason")),
            "note": note, "lastUpdated": ref.last_updated}
    # What the consumers need of a Vigil Task, so none reads it again: its decisions, who acted
    # (a reference), the category, grade and model version it shows.
    decisions = vigiltasks.decision_ids(task)
    if decisions:
        grades = [g for g in vigiltasks.input_values(task, "grade") if isinstance(g, int) and 1 <= g <= 5]
        versions = [v for v in vigiltasks.input_values(task, "model-version") if isinstance(v, str) and v]
        category = vigiltasks.finding_code(task)
        clinician = vigiltasks.clinician_of(task)
        data.update(decisions=[d for d in decisions if len(d) <= 128][:MAX_DECISIONS],
                    clinician=clinician if clinician and len(clinician) <= 256 else None,
                    category=category if category and len(category) <= 64 else None,
                    grade=max(grades) if grades else None, modelVersion=versions[0][:128] if versions else None)
    return Event.new(TASK_UPDATED, source=f"/ingest/{tenant}", tenant=tenant, key=ref.patient, data=data,
                     id=deterministic_id(tenant, TASK_UPDATED, ref.id, ref.version_id),
                     subject=f"Task/{ref.id}/_history/{ref.version_id}")


def routes(resource_type: str) -> str:
    """The stream a changed resource goes to."""
    return FEEDBACK if resource_type == "Task" else EHR_EVENTS
