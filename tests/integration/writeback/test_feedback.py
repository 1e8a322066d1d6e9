"""Clinician actions on Vigil Tasks (as the inbox makes them) become labels and ledger entries."""
from __future__ import annotations


from services.ingest.events import task_updated
from tests.fixtures.kafka import wait_idle
from tests.integration.writeback.test_writeback import patient, written

OVERRIDE_SYSTEM = "http://vigil.example/fhir/CodeSystem/override-reason"


async def _labels(wb, task_id):
    rows = await wb.deps.labels.for_task(wb.tenant, task_id)
    return rows or None


async def test_override_and_accept_become_labels_once(wb_tenant):
    wb = wb_tenant
    pid = await patient(wb)
    doc = await wb.note(pid)
    ev = wb.decision(pid, doc)
    async with wb.host(stages=("writeback", "feedback")) as host:
        await wb.publish("actions", [ev])
        await wb.wait(lambda: written(wb, ev.data["decisionId"]))
        (task,) = await wb.ehr.client.search("Task", {"patient": pid})
        # what the inbox's Override button does
        changed = {**task, "status": "rejected",
                   "statusReason": {"coding": [{"system": OVERRIDE_SYSTEM, "code": "not-irae"}]},
                   "note": [{"authorReference": {"reference": "Practitioner/onc-1"}, "text": "diarrhea from C. diff"}]}
        stored = (await wb.ehr.client.update(changed, if_match=task["meta"]["versionId"])).resource
        event = task_updated(wb.tenant, stored)
        own = task_updated(wb.tenant, task)           # the Task as writeback created it: no label
        await wb.publish("feedback", [own, event, event])
        rows = await wb.wait(lambda: _labels(wb, task["id"]))
        await wait_idle(wb.stack, wb.tenant, host.specs)  # all three deliveries handled
    rows = await wb.deps.labels.for_task(wb.tenant, task["id"])
    assert len(rows) == 1
    label = rows[0]
    assert (label["action"], label["reason"], label["clinician"], label["source"]) == (
        "overridden", "not-irae", "Practitioner/onc-1", "ehr-task")
    assert (label["decision_id"], label["category"], label["grade"], label["model_version"]) == (
        ev.data["decisionId"], "colitis", 2, "rules-2026.11")
    assert label["comment"] is None  # free text stays in the EHR
    row = await wb.deps.ledger.get(wb.tenant, ev.data["decisionId"])
    assert (row["clinician_action"], row["action_reason"]) == ("overridden", "not-irae")


async def test_non_vigil_task_is_ignored(wb_tenant):
    wb = wb_tenant
    pid = await patient(wb)
    other = (await wb.ehr.client.create({"resourceType": "Task", "status": "completed", "intent": "order",
                                         "for": {"reference": f"Patient/{pid}"}})).resource
    async with wb.host(stages=("feedback",)) as host:
        await wb.publish("feedback", [task_updated(wb.tenant, other)])
        await wb.wait(lambda: _consumed(host))
    assert await wb.deps.labels.for_task(wb.tenant, other["id"]) == []


async def _consumed(host):
    from services.core.bus import metrics

    runner = next(r for (t, s), r in host.runners.items() if s == "feedback")
    return metrics.SUCCEEDED.labels(tenant=runner.tenant, stage="feedback")._value.get() >= 1
