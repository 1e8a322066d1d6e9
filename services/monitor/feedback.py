"""Clinicians' answers to Vigil's results become labels (``labels``), in the monitor's stream
processor (``stream.Processor``), in the same transaction that counts the event once.

From the ``feedback`` stream:

- ``vigil.ehr.task-updated`` (ingest, from the EHR inbox): the Task's status says the action
  (``services.core.clinician``: completed / accepted / in-progress -> accepted, rejected /
  cancelled -> overridden, anything else - e.g. Vigil's own writes - no label). One label per
  decision the Task carries (the event's ``decisions``, read by ingest from the Task's
  identifiers), id ``task:<id>/<version>:<decision>``; a Task without decisions is not Vigil's.
  Category and model version come from the event (ingest reads them from the Task), else from the
  Task's row (``monitor_tasks``, from task-written).
- ``vigil.cdshooks.feedback`` (cdshooks): one label per decision behind the card, id
  ``cds:<card>:<time>:<decision>``, the comment opened from its sealed form.

Label ids are deterministic in their source, so a redelivered event stores nothing twice.
"""
from __future__ import annotations

from datetime import datetime

from services.core import clinician, contracts
from services.monitor.labels import Label

TASK_UPDATED = contracts.TASK_UPDATED
CDS_FEEDBACK = contracts.CDS_FEEDBACK


def task_labels(data: dict, task_row: dict | None = None) -> list[Label]:
    """The labels of one ``vigil.ehr.task-updated`` event (``task_row``: the monitor's row of the Task)."""
    action = clinician.task_action(data.get("status") or "")
    decisions = data.get("decisions") or []
    if action is None or not decisions:
        return []
    task_id, version = data["task"]["id"], data["task"]["versionId"]
    reason = data.get("statusReason") or data.get("note")
    known = task_row or {}
    category = data.get("category") or (known.get("category") if known.get("category") not in (None, "unknown")
                                        else None)
    model = data.get("modelVersion") or (known.get("version") if known.get("version") not in (None, "unknown")
                                         else None)
    return [Label(id=f"task:{task_id}/{version}:{decision_id}", source="ehr-task", action=action, reason=reason,
                  clinician=data.get("clinician"), patient=data["patient"], decision_id=decision_id,
                  task_id=task_id, task_version=str(version), category=category, grade=data.get("grade"),
                  model_version=model)
            for decision_id in decisions]


def card_labels(data: dict, comment: str | None) -> list[Label]:
    """The labels of one ``vigil.cdshooks.feedback`` event (``comment`` opened by the caller)."""
    when = datetime.fromisoformat(data["time"].replace("Z", "+00:00"))
    return [Label(id=f"cds:{data['card']}:{when.isoformat()}:{decision_id}", source="cds-hooks",
                  action=data["outcome"], reason=data.get("reason"), comment=comment,
                  clinician=data.get("clinician"), patient=data["patient"], decision_id=decision_id,
                  task_id=data.get("task"), category=data.get("category"), grade=data.get("grade"),
                  model_version=data.get("modelVersion"), time=when)
            for decision_id in data["decisions"]]
