"""The feedback stage: clinicians' actions on Vigil's Tasks become labels.

Runs in the writeback process (it shares the tenant EHR clients, pools and ledger) as its own
``StageSpec`` ``feedback`` on the ``feedback`` stream (``vigil.ehr.task-updated`` from ingest).

Status -> action (the inbox sets ``completed`` on Accept and ``rejected`` on Override):

    accepted   <- accepted, in-progress, completed
    overridden <- rejected, cancelled
    (anything else, e.g. our own ``requested`` writes and updates: no label)

For an action, the Task version named by the event is read from the EHR (clinician =
the author of its last note, else its owner; decision ids from its identifiers), and for every
decision of the Task one label is stored (``services.core.labels``; id
``task:<id>/<version>:<decision>``, so a redelivered event stores nothing twice) and the
clinician's action is added to the decision ledger (``record_feedback``).
"""
from __future__ import annotations

from services.core import contracts
from services.core.errors import NotFoundError
from services.core.labels import Label
from services.writeback import resources as R
from services.writeback.deps import Deps

STAGE = "feedback"
TASK_UPDATED = contracts.TASK_UPDATED
ACTIONS = {"accepted": "accepted", "in-progress": "accepted", "completed": "accepted",
           "rejected": "overridden", "cancelled": "overridden"}


def clinician_of(task: dict) -> str | None:
    for note in reversed(task.get("note") or []):
        ref = (note.get("authorReference") or {}).get("reference")
        if ref:
            return ref
    return (task.get("owner") or {}).get("reference")


class Feedback:
    def __init__(self, deps: Deps):
        self.deps = deps

    async def __call__(self, event, ctx) -> None:
        if event.type != TASK_UPDATED:
            return
        d, tenant = event.data, ctx.tenant
        action = ACTIONS.get(d["status"])
        if action is None:
            return
        task_id, version = d["task"]["id"], d["task"]["versionId"]
        client = await self.deps.client(tenant)
        try:
            task = await (client.vread("Task", task_id, version) if version else client.read("Task", task_id))
        except NotFoundError:
            ctx.log.warning("feedback.task_missing")
            return
        decision_ids = [i["value"] for i in task.get("identifier", []) if i.get("system") == R.DECISION_SYSTEM]
        if not decision_ids:
            return  # not a Vigil Task
        rows = {r["id"]: r for r in await self.deps.ledger.by_task(tenant, task_id)}
        reason = d.get("statusReason") or d.get("note")
        clinician = clinician_of(task)
        grades = [g for g in R.task_inputs(task, "grade") if isinstance(g, int)]
        versions = [v for v in R.task_inputs(task, "model-version") if isinstance(v, str)]
        for decision_id in decision_ids:
            row = rows.get(decision_id) or {}
            await self.deps.labels.add(tenant, Label(
                id=f"task:{task_id}/{version}:{decision_id}", source="ehr-task", action=action, reason=reason,
                clinician=clinician, patient=d["patient"], decision_id=decision_id, task_id=task_id,
                task_version=str(version), category=row.get("category") or _finding(task),
                grade=row.get("grade") if row else (grades[0] if grades else None),
                model_version=row.get("engine_version") or (versions[0] if versions else None)))
        labelled = await self.deps.ledger.record_feedback(tenant, f"Task/{task_id}", action, reason)
        ctx.log.info("feedback.labelled", action=action, decisions=len(decision_ids), ledger=len(labelled))


def _finding(task: dict) -> str | None:
    found = R.task_inputs(task, "finding")
    if found and isinstance(found[0], dict):
        codings = found[0].get("coding") or []
        return (codings[0].get("code") if codings else None) or found[0].get("text")
    return None
