"""writeback follows the tenant's integration profile: nothing is written where the profile says
the EHR does not take it (resources counted in the sandbox), and the rest is still written."""
from __future__ import annotations

from services.core.integration import parse as parse_profile
from services.core.tenancy import Registry, Tenant
from services.writeback import resources as R
from tests.fixtures.kafka import wait_idle
from tests.integration.writeback.test_cdshooks import CARD_STAGES, projected, cds, hook_body, token  # noqa: F401 (cds: a fixture)
from tests.integration.writeback.test_writeback import counts, patient, written


def profile(wb, **table) -> Tenant:
    tenant = Tenant(id=wb.tenant, mode="active", partitions=4, ehr_base_url=wb.ehr.base_url,
                    integration=parse_profile(wb.tenant, table))
    Registry(wb.path, [tenant]).save()
    return tenant


async def test_only_the_accepted_types_are_written(wb_tenant):
    """An EHR that takes Tasks and AuditEvents only: no Observation / DetectedIssue, Provenance or
    Device; the evidence stays on the Task, the AuditEvent names the AI system by display."""
    wb = wb_tenant
    profile(wb, results=["fhir"], ehr_accepts=["Task", "AuditEvent"])
    pid = await patient(wb)
    doc = await wb.note(pid)
    routine, urgent = wb.decision(pid, doc, episode="a"), wb.decision(pid, doc, kind="urgent-task", episode="b", n=1)
    async with wb.host():
        await wb.publish("actions", [routine, urgent])
        rows = [await wb.wait(lambda e=e: written(wb, e.data["decisionId"])) for e in (routine, urgent)]
    assert await counts(wb, pid) == {"Task": 2, "Observation": 0, "DetectedIssue": 0, "Provenance": 0,
                                     "AuditEvent": 2, "Device": 0}
    for row in rows:
        assert sorted(r.split("/")[0] for r in row["written_refs"]) == ["AuditEvent", "Task"]
    for task in await wb.ehr.client.search("Task", {"patient": pid}):
        assert "focus" not in task and R.task_inputs(task, "evidence-quote") == ["6-7 watery stools per day"]
    for audit in await wb.ehr.client.search("AuditEvent", {}):
        assert audit["agent"][0]["who"] == {"display": R.DEVICE_DISPLAY}
        assert all(e["what"]["reference"].split("/")[0] in ("Task", "Patient") for e in audit["entity"])


async def test_a_redelivered_decision_reads_back_without_the_types_left_out(wb_tenant):
    wb = wb_tenant
    profile(wb, results=["fhir"], ehr_accepts=["Task", "Observation"])
    pid = await patient(wb)
    ev = wb.decision(pid, await wb.note(pid))
    from services.writeback.writer import Writer

    client = await wb.deps.client(wb.tenant)
    accepts = wb.deps.directory.get(wb.tenant).integration.accepts

    async def allow() -> None:
        return None

    first = await Writer(client, accepts).write(ev.data, allow)
    again = await Writer(client, accepts).write(ev.data, allow)
    assert first.action == "created" and again.action == "none"
    assert sorted(r.split("/")[0] for r in again.refs) == sorted(r.split("/")[0] for r in first.refs) == \
        ["Observation", "Task"]
    assert await counts(wb, pid) == {"Task": 1, "Observation": 1, "DetectedIssue": 0, "Provenance": 0,
                                     "AuditEvent": 0, "Device": 0}


async def test_nothing_is_written_when_fhir_is_not_a_results_channel(wb_tenant):
    wb = wb_tenant
    profile(wb, family="hl7-only", triggers=["hl7v2-feed"], note_sources=["document-store"], results=["hl7v2"],
            ehr_accepts=[], hl7_out={"host": "127.0.0.1", "port": 9})
    pid = await patient(wb)
    ev = wb.decision(pid, await wb.note(pid))
    async with wb.host() as host:
        await wb.publish("actions", [ev])
        await wait_idle(wb.stack, wb.tenant, host.specs)
    assert await counts(wb, pid) == {"Task": 0, "Observation": 0, "DetectedIssue": 0, "Provenance": 0,
                                     "AuditEvent": 0, "Device": 0}
    row = await wb.ledger.get(wb.tenant, ev.data["decisionId"])
    assert row is not None and row["written_refs"] == [], "the decision is on record, nothing written"


async def test_no_cds_service_when_the_profile_does_not_deliver_cards(wb_tenant, cds):
    """The same registered CDS client and a valid JWT: discovery lists nothing and the hook is 404
    once the profile's results channels leave ``cds-hooks`` out (a Task is written, no card)."""
    wb = wb_tenant
    settings = dict(wb.deps.directory.get(wb.tenant).settings)
    pid = await patient(wb)
    ev = wb.decision(pid, await wb.note(pid), kind="urgent-task", grade=3)
    async with wb.host(stages=CARD_STAGES):
        await wb.publish("actions", [ev])
        await wb.wait(lambda: written(wb, ev.data["decisionId"]))
        await wb.wait(lambda: projected(wb, ev.data["decisionId"], task=True))  # cdshooks' read model has it
    url = f"/{wb.tenant}/cds-services/irae-patient-view"
    r = await cds.post(url, json=hook_body(pid), headers={"Authorization": f"Bearer {token(cds, wb.tenant)}"})
    assert r.status_code == 200 and len(r.json()["cards"]) == 1, "with the default profile, one card"
    tenant = Tenant(id=wb.tenant, mode="active", partitions=4, ehr_base_url=wb.ehr.base_url, settings=settings,
                    integration=parse_profile(wb.tenant, {"results": ["fhir"]}))
    Registry(wb.path, [tenant]).save()
    assert (await cds.get(f"/{wb.tenant}/cds-services")).json() == {"services": []}
    r = await cds.post(url, json=hook_body(pid), headers={"Authorization": f"Bearer {token(cds, wb.tenant)}"})
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    assert await wb.count("Task", patient=pid) == 1
