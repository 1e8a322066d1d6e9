"""How a Vigil Task in the EHR names the decisions behind it, for every service that reads one
(writeback writes them, ingest turns a clinician's change into a ``vigil.ehr.task-updated``
event). The full Task contract (inputs, evidence) is in ``services/writeback/resources.py`` and
the inbox module docstring; this module holds only what a reader needs.

    ids = decision_ids(task)          # the decision ids on Task.identifier
    who = clinician_of(task)          # "Practitioner/..." of the last note, else the owner
    grade = input_values(task, "grade")
"""
from __future__ import annotations

DECISION_SYSTEM = "https://vigil.health/fhir/sid/decision"
INPUT_SYSTEM = "http://vigil.example/fhir/CodeSystem/task-input"   # the inbox contract


def task_id_of(refs: list[str]) -> str | None:
    """The Task id among writeback's read-back refs (``Task/<id>/_history/<v>``, the
    ``task-written`` event's ``refs``)."""
    for ref in refs:
        parts = ref.split("/")
        if len(parts) >= 2 and parts[0] == "Task":
            return parts[1]
    return None


def decision_ids(task: dict) -> list[str]:
    return [i["value"] for i in task.get("identifier") or []
            if isinstance(i, dict) and i.get("system") == DECISION_SYSTEM and isinstance(i.get("value"), str)]


def clinician_of(task: dict) -> str | None:
    """Who acted: the author of the Task's last note, else its owner (a reference, not a name)."""
    for note in reversed(task.get("note") or []):
        ref = ((note or {}).get("authorReference") or {}).get("reference") if isinstance(note, dict) else None
        if isinstance(ref, str) and ref:
            return ref
    ref = (task.get("owner") or {}).get("reference")
    return ref if isinstance(ref, str) and ref else None


def input_code(item: dict) -> str | None:
    for coding in (item.get("type") or {}).get("coding") or []:
        if coding.get("system") == INPUT_SYSTEM:
            return coding.get("code")
    return None


def input_values(task: dict, name: str) -> list:
    """Values of the Task inputs with code ``name``, in Task order (newest evidence first)."""
    out = []
    for item in task.get("input") or []:
        if isinstance(item, dict) and input_code(item) == name:
            out.append(next((v for k, v in item.items() if k.startswith("value")), None))
    return out


def finding_code(task: dict) -> str | None:
    """The irAE category of the Task's (newest) finding input."""
    found = input_values(task, "finding")
    if found and isinstance(found[0], dict):
        codings = found[0].get("coding") or []
        code = codings[0].get("code") if codings and isinstance(codings[0], dict) else None
        return code or found[0].get("text")
    return None
