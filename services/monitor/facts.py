"""What one event tells the monitor: counts per (metric, category, version), tasks, actions.

Pure functions over validated event payloads (``schemas/``); no state, no I/O. The joins
(a Task's category and model version for a clinician action, a decision's model version for a
written Task) are the stream processor's job (``services.monitor.stream``).

Metrics (the ``metric`` of a ``Count``; category ``*`` means "the whole note"):

| event | metric | category |
|---|---|---|
| findings | ``notes``, ``notes_without_findings``, ``review_required``, ``note_length:<bin>``, ``note_type:<code>`` | ``*`` |
| findings | ``findings``, ``grade:<1-5 or none>`` | the finding's |
| decision | ``decisions:<kind>`` | the decision's |
| task-written (created) | ``tasks_created``, ``tasks_created:<kind>`` | the Task's |
| task-written (updated) | ``tasks_updated`` | the Task's |
| task-updated (first clinician action) | ``accepted`` / ``overridden``, ``override_reason:<code>`` | the Task's |

Labels never carry free text: categories and note-type codes outside a plain code alphabet
become ``other``; override reasons are limited to the configured codes.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from services.core import clinician
from services.monitor.stats import note_length_bin
from services.core import contracts

FINDINGS = contracts.EXTRACTION_FINDINGS
DECISION = contracts.TRIAGE_DECISION
TASK_WRITTEN = contracts.TASK_WRITTEN
TASK_UPDATED = contracts.TASK_UPDATED
WHOLE_NOTE = "*"
UNKNOWN = "unknown"
#: Task status -> clinician action (one mapping for every feedback consumer, ``services.core.clinician``).
ACTIONS = clinician.BY_TASK_STATUS
_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:+-]{0,63}$")


def code(value: object) -> str:
    """A label-safe code or ``other``."""
    return value if isinstance(value, str) and _CODE.match(value) else "other"


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


@dataclass(frozen=True)
class Count:
    metric: str
    category: str
    version: str
    amount: float = 1.0


@dataclass(frozen=True)
class TaskWritten:
    task_id: str
    decision_id: str
    category: str
    kind: str
    created: bool
    note_time: datetime | None
    written_time: datetime
    version: str | None = None  # the decision's engine version (an older event without it: None)

    @property
    def tta_seconds(self) -> float | None:
        if self.note_time is None or not self.created:
            return None
        return max(0.0, (self.written_time - self.note_time).total_seconds())


@dataclass(frozen=True)
class TaskAction:
    task_id: str
    action: str           # accepted | overridden
    reason: str | None
    time: datetime


def findings_counts(data: dict) -> list[Count]:
    version = code(data.get("engineVersion")) if data.get("engineVersion") else UNKNOWN
    out = [Count("notes", WHOLE_NOTE, version)]
    findings = data.get("findings") or []
    if not findings:
        out.append(Count("notes_without_findings", WHOLE_NOTE, version))
    if data.get("reviewRequired"):
        out.append(Count("review_required", WHOLE_NOTE, version))
    if isinstance(data.get("noteLength"), int):
        out.append(Count(f"note_length:{note_length_bin(data['noteLength'])}", WHOLE_NOTE, version))
    if data.get("noteType"):
        out.append(Count(f"note_type:{code(data['noteType'])}", WHOLE_NOTE, version))
    for f in findings:
        category = code(f.get("category"))
        grade = f.get("grade")
        out.append(Count("findings", category, version))
        out.append(Count(f"grade:{grade if isinstance(grade, int) else 'none'}", category, version))
    return out


def decision_counts(data: dict) -> tuple[str, str, list[Count]]:
    """(decision id, model version, counts)."""
    version = code(data.get("engineVersion")) if data.get("engineVersion") else UNKNOWN
    return data["decisionId"], version, [Count(f"decisions:{code(data.get('kind'))}", code(data.get("category")),
                                               version)]


def task_written(data: dict) -> TaskWritten | None:
    written = parse_time(data.get("writtenTime"))
    if written is None:
        return None
    return TaskWritten(task_id=data["task"]["id"], decision_id=data["decisionId"], category=code(data["category"]),
                       kind=code(data.get("kind")), created=data.get("action") == "created",
                       note_time=parse_time(data.get("noteTime")), written_time=written,
                       version=code(data["engineVersion"]) if data.get("engineVersion") else None)


def task_action(data: dict) -> TaskAction | None:
    action = ACTIONS.get(data.get("status") or "")
    when = parse_time(data.get("lastUpdated"))
    if action is None or when is None:
        return None
    reason = data.get("statusReason") or data.get("note")
    return TaskAction(task_id=data["task"]["id"], action=action, reason=reason if action == "overridden" else None,
                      time=when)
