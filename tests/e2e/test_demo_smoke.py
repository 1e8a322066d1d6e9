"""Smoke test of the demo: every service as its own process, three fresh tenants (two FHIR
servers whose notes go through the EHR, one Epic-like site whose notes come as an HL7v2 feed and
whose results go out as ORU^R01 and CDS Hooks cards), and a summary whose numbers are checked
against the EHR and the interface engine stand-in themselves."""
from __future__ import annotations

import asyncio
import uuid

import pytest

from services.commands.demo import runner
from services.commands.demo.pipeline import Pipeline
from services.commands.demo.plan import PORT_OFFSETS, DemoPlan
from services.commands.demo.tenants import EPIC_LIKE_PROFILE, DemoTenant
from services.hl7out.message import control_id
from tests.fixtures.ports import free_port


#: The sandbox EHR's port: past the services' offsets, in the same block.
EHR_OFFSET = max(PORT_OFFSETS.values()) + 1


@pytest.fixture
def pipeline(stack, tmp_path):
    suffix = uuid.uuid4().hex[:6]
    base = free_port(block=EHR_OFFSET + 1)  # every port of the plan, below the ephemeral range
    settings = stack.with_overrides(state_dir=tmp_path, ehr_url=f"http://127.0.0.1:{base + EHR_OFFSET}")
    plan = DemoPlan.create("demo", port_base=base, settings=settings)
    tenants = (DemoTenant(f"nv-{suffix}", "North Valley (test)", "active", {"engine": "rules"}),
               DemoTenant(f"ls-{suffix}", "Lakeshore (test)", "pilot", {"engine": "rules"},
                          pilot_oncologists=("onc-1", "onc-2", "onc-3")),
               DemoTenant(f"rb-{suffix}", "Riverbend (test, Epic-like)", "active", {"engine": "rules"},
                          family="epic-like", integration=EPIC_LIKE_PROFILE))
    pipe = Pipeline(plan, tenants, optional=False)  # the notes -> results paths only
    try:
        pipe.up()
        yield pipe
    finally:
        pipe.down()


@pytest.mark.timeout(300)
def test_demo_day_delivers_results_on_each_tenants_channels(pipeline):
    rows, info = asyncio.run(runner.run_day(pipeline, 4, conversations=False))
    assert info["drained"], "pipeline did not drain"
    # one clinician action per inbox Task, counted once each (not once per decision of the Task)
    assert info["clinician_actions"] >= 2 and info["feedback_recorded"] == info["clinician_actions"]
    assert info["period"].since < info["period"].until
    assert sum(r.accepted + r.overridden for r in rows) == info["feedback_recorded"]
    assert [r.tenant for r in rows] == [t.id for t in pipeline.tenants]
    fhir_rows, (epic,) = rows[:2], rows[2:]

    async def tasks_in_ehr(tenant: str, patients: list[str]) -> list[dict]:
        async with pipeline.client(tenant) as client:
            found = []
            for patient in patients:
                found += await client.search("Task", {"patient": f"Patient/{patient}"})
            return found

    for row in fhir_rows:
        assert row.notes == 4 and row.notes_processed == 4
        assert row.findings >= 2 and row.decisions >= 2
        assert row.written == row.decisions  # everyone on the pilot list: all written
        assert row.tasks >= 1 and len(row.alert_seconds) == row.written
        assert all(0 < s < 120 for s in row.alert_seconds)
        assert row.dead_letters == 0
        # patient-view (before the clinician round): one card per open Task
        assert row.cds_cards == row.tasks
        assert row.delivery_line().startswith(f"{row.tenant}: 4 notes -> {row.tasks} Tasks in the inbox (FHIR)")
    # the Epic-like tenant: notes by HL7, results as ORUs the engine acknowledged and as cards, nothing in its EHR
    assert epic.hl7_notes and epic.notes == 4 and epic.notes_processed == 4
    assert epic.findings >= 2 and epic.decisions >= 2 and epic.written == 0 and epic.tasks == 0
    assert epic.oru_delivered == epic.decisions and len(epic.alert_seconds) == epic.decisions
    assert all(0 < s < 120 for s in epic.alert_seconds)
    assert 1 <= epic.cds_cards <= epic.decisions  # one per open episode
    assert epic.ehr_vigil_resources == 0 and epic.dead_letters == 0
    accepted = pipeline.engine.accepted()
    ledger_ids = asyncio.run(_decision_ids(pipeline, epic.tenant))
    assert sorted(accepted) == sorted(control_id(epic.tenant, d, 1) for d in ledger_ids)
    assert all(n == 1 for n in accepted.values())
    assert all(d.message_type.startswith("ORU^R01") for d in pipeline.engine.received)
    assert epic.delivery_line() == (f"{epic.tenant}: 4 HL7 notes -> {epic.decisions} ORU results delivered to the "
                                    f"interface engine (AA), {epic.cds_cards} CDS cards, 0 resources written to "
                                    "the EHR")
    # what the Epic-like EHR holds of Vigil's, read from the sandbox itself
    epic_patients = asyncio.run(_run_patients(pipeline, epic.tenant))
    assert len(epic_patients) == 3
    for rtype in ("Task", "Observation", "DetectedIssue"):
        assert asyncio.run(_count(pipeline, epic.tenant, rtype, epic_patients)) == 0
    # the summary's Task counts are what the EHRs hold for the run's patients
    for row in fhir_rows:
        tenant = row.tenant
        run_patients = asyncio.run(_run_patients(pipeline, tenant))
        tasks = asyncio.run(tasks_in_ehr(tenant, run_patients))
        assert len(tasks) == row.tasks
        assert all(t["meta"].get("security") for t in tasks)
    assert pipeline.supervisor is not None and not [d for d in pipeline.supervisor.dead()
                                                    if d not in pipeline.failed]


async def _run_patients(pipe: Pipeline, tenant: str) -> list[str]:
    from services.commands.demo.driver import RUN_SYSTEM

    async with pipe.client(tenant) as client:  # the run's patients carry the run identifier
        patients = await client.search("Patient", {"_count": "500"})
    return [p["id"] for p in patients if any(i.get("system") == RUN_SYSTEM and not i["value"].endswith("-warm")
                                             for i in p.get("identifier", []))]


async def _count(pipe: Pipeline, tenant: str, rtype: str, patients: list[str]) -> int:
    async with pipe.client(tenant) as client:
        return sum([len(await client.search(rtype, {"patient": f"Patient/{p}"})) for p in patients])


async def _decision_ids(pipe: Pipeline, tenant: str) -> list[str]:
    """The tenant's result decisions of this run, from the ledger (a fresh tenant: all of them)."""
    from datetime import datetime, timezone

    from services.commands.demo.summary import result_rows

    pools, ledger = await runner._ledger(pipe.plan.settings)
    try:
        rows = await ledger.since(tenant, datetime(2000, 1, 1, tzinfo=timezone.utc))
    finally:
        await pools.close()
    return [r["id"] for r in result_rows(rows)]
