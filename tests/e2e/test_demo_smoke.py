"""Smoke test of the demo: every service as its own process, two fresh tenants, a few notes
through the EHR, and a summary whose numbers are checked against the EHR itself."""
from __future__ import annotations

import asyncio
import uuid

import pytest

from services.commands.demo import runner
from services.commands.demo.pipeline import Pipeline
from services.commands.demo.plan import PORT_OFFSETS, DemoPlan
from services.commands.demo.tenants import DemoTenant
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
                          pilot_oncologists=("onc-1", "onc-2", "onc-3")))
    pipe = Pipeline(plan, tenants, optional=False)  # the notes -> Tasks path only
    try:
        pipe.up()
        yield pipe
    finally:
        pipe.down()


@pytest.mark.timeout(240)
def test_demo_day_writes_tasks_in_both_tenants(pipeline):
    rows, info = asyncio.run(runner.run_day(pipeline, 4, conversations=False))
    assert info["drained"], "pipeline did not drain"
    # one clinician action per inbox Task, counted once each (not once per decision of the Task)
    assert info["clinician_actions"] >= 2 and info["feedback_recorded"] == info["clinician_actions"]
    assert info["period"].since < info["period"].until
    assert sum(r.accepted + r.overridden for r in rows) == info["feedback_recorded"]
    assert [r.tenant for r in rows] == [t.id for t in pipeline.tenants]

    async def tasks_in_ehr(tenant: str, patients: list[str]) -> list[dict]:
        async with pipeline.client(tenant) as client:
            found = []
            for patient in patients:
                found += await client.search("Task", {"patient": f"Patient/{patient}"})
            return found

    for row in rows:
        assert row.notes == 4 and row.notes_processed == 4
        assert row.findings >= 2 and row.decisions >= 2
        assert row.written == row.decisions  # everyone on the pilot list: all written
        assert row.tasks >= 1 and len(row.alert_seconds) == row.written
        assert all(0 < s < 120 for s in row.alert_seconds)
        assert row.dead_letters == 0
    # the summary's Task counts are what the EHRs hold for the run's patients
    for row in rows:
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
