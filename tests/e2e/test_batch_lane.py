"""The batch lane, in process, on the real broker, Redis, PostgreSQL and EHR sandbox.

1. A silent retrospective run over a labelled cohort (the realistic tune notes) for a tenant in
   *active* mode, with the real-time stages (writeback included) running beside the batch lane:
   decisions are in the ledger with the run's name, mode silent, never written; nothing reaches
   ``actions`` and the EHR holds no Task, Observation, DetectedIssue or Provenance. `vigil crawl
   report --gold` gives the counts a hand computation from the ledger gives.
2. A note that came through the real-time path (HL7 MDM -> document store -> Task) and is then
   exported again by a batch run is the same stored note: skipped, not published, processed once.
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sys
from pathlib import Path

import pytest

from services.core import crypto
from services.core.bus import ensure_stage_topics
from services.core.bus.service import StageHost
from services.triage.ledger import DecisionLedger
from services.core.lanes import BATCH, BATCH_KEY_LANES, LANES
from services.core.tenancy import Registry, Tenant
from services.extraction import app as extraction_app
from services.ingest.batch import job as batch_job
from services.ingest.hl7.mapping.common import identifier_system
from services.ingest.hl7.patientkey import PatientKeys
from services.ingest.hl7stage import app as hl7_app
from services.ingest.hl7stage.deps import Hl7Deps
from services.ingest.mllp.pipeline import Hl7Pipeline
from services.ingest.mllp.server import MllpServer
from services.ingest.store import documents
from services.triage import app as triage_app
from tests.e2e.test_hl7_to_task import MRN_SYSTEM, mdm, send_all
from tests.e2e.test_note_to_task import pipeline  # noqa: F401  (the fixture)
from tests.fixtures.batch_source import JsonlSource
from tests.fixtures.kafka import read_topic, wait_idle
from tests.fixtures.writeback import FAST_RETRY, FAST_TUNING

REPO = Path(__file__).resolve().parents[2]
TUNE = REPO / "tests" / "data" / "realistic" / "tune.jsonl"
COHORT = 16
ALERTS = ("urgent-task", "routine-task")
BATCH_LANE = LANES[BATCH]

pytestmark = pytest.mark.xdist_group("batch-lane")


def batch_specs(pipe, wb) -> list:
    return [*extraction_app.specs(pipe.agent_clients, wb.pools, BATCH_LANE, retry=FAST_RETRY,
                                  tuning=dataclasses.replace(FAST_TUNING, key_lanes=BATCH_KEY_LANES)),
            *triage_app.specs(wb.pools, pipe.agent_clients, wb.settings, BATCH_LANE, retry=FAST_RETRY,
                              tuning=FAST_TUNING)]


class Host:
    def __init__(self, wb, specs, resources=()):
        self.wb, self.specs, self.resources = wb, specs, list(resources)

    async def __aenter__(self):
        await ensure_stage_topics(self.wb.stack, Tenant(id=self.wb.tenant), self.specs)
        self.host = StageHost(self.wb.settings, self.specs, port=0, host="127.0.0.1", tenants=[self.wb.tenant],
                              resources=self.resources)
        await self.host.start()
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(self.host.run(self.stop))
        return self

    async def __aexit__(self, *exc):
        self.stop.set()
        await self.task
        await self.host.stop()


async def run_batch(wb, pipe, path: Path, name: str) -> batch_job.JobRow:
    job = batch_job.BatchJob(wb.tenant, name, "jsonl", JsonlSource(path), pools=wb.pools,
                             keyring=crypto.Keyring(wb.pools), publishers=pipe.publishers,
                             patient_keys=PatientKeys(pipe.secrets), chunk=5)
    return await job.run()


async def test_silent_run_writes_nothing_to_the_ehr_and_the_report_matches_the_ledger(pipeline, wb_tenant,  # noqa: F811
                                                                                       tmp_path):
    wb, client = wb_tenant, pipeline.client
    assert Registry.load(wb.path).get(wb.tenant).mode == "active"  # writeback would write a real-time decision
    gold_rows = [json.loads(line) for line in TUNE.read_text().splitlines() if line.strip()][:COHORT]
    cohort = tmp_path / "cohort.jsonl"
    cohort.write_text("".join(json.dumps({**row, "note_time": f"2025-{1 + i % 6:02d}-10T09:00:00Z"}) + "\n"
                              for i, row in enumerate(gold_rows)))
    batch = batch_specs(pipeline, wb)
    async with Host(wb, [*pipeline.specs, *batch]):
        row = await run_batch(wb, pipeline, cohort, "retro-2025")
        assert (row.state, row.stored, row.published) == ("done", COHORT, COHORT)
        await wait_idle(wb.stack, wb.tenant, batch, timeout=180)
        await wait_idle(wb.stack, wb.tenant, pipeline.specs, timeout=30)

    decisions = await DecisionLedger(wb.pools).by_run(wb.tenant, "retro-2025")
    assert decisions, "the cohort has irAE notes: the run must decide something"
    assert {(d["mode"], d["write"], d["run"], d["episode_key"] is not None) for d in decisions} == {
        ("silent", False, "retro-2025", True)}
    assert all(not d["written_refs"] and d["task_id"] is None for d in decisions)
    # nothing on the real-time lane's streams; the decisions are on batch-decisions only
    for stream in ("ehr-events", "findings", "actions", "scheduling"):
        assert await read_topic(wb.stack, f"vigil.{wb.tenant}.{stream}", 1, timeout=1.5) == [], stream
    findings = await read_topic(wb.stack, f"vigil.{wb.tenant}.batch-findings", COHORT, timeout=10)
    assert len({r.key for r in findings}) >= 1 and len(findings) >= COHORT
    emitted = await read_topic(wb.stack, f"vigil.{wb.tenant}.batch-decisions", len(decisions), timeout=10, settle=0.5)
    assert len({json.loads(r.value)["decisionId"] for r in emitted}) == len(decisions)
    # the EHR (sandbox): not one resource written for the run
    for rtype in ("Task", "Observation", "DetectedIssue", "Provenance", "Communication"):
        assert await wb.count(rtype) == 0, rtype

    # the report against the cohort, as the operator runs it
    env = dict(os.environ, VIGIL_KAFKA_BOOTSTRAP=wb.stack.kafka.bootstrap, VIGIL_REDIS_URL=wb.stack.redis_url,
               VIGIL_POSTGRES_DSN=wb.stack.postgres_dsn, VIGIL_TENANTS_FILE=str(wb.path), VIGIL_ENV="test",
               VIGIL_LOG_LEVEL="warning")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", "crawl", "report", "--tenant", wb.tenant, "--run", "retro-2025",
        "--gold", str(cohort), "--out", str(tmp_path / "report"), "--json", "--resamples", "200", cwd=str(REPO),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode in (0, 1), err.decode()[-2000:]
    report = json.loads(out)
    # by hand: the run's alert categories per note id against the labels
    docs = {documents.document_id(wb.tenant, "urn:vigil:test:note-id", r["id"]): r["id"] for r in gold_rows}
    alerted: dict[str, set[str]] = {}
    for d in decisions:
        if d["kind"] in ALERTS:
            alerted.setdefault(docs[d["document_id"]], set()).add(d["category"])
    tp = fp = fn = 0
    for r in gold_rows:
        labels, got = {x["category"] for x in r["labels"]}, alerted.get(r["id"], set())
        tp, fp, fn = tp + len(labels & got), fp + len(got - labels), fn + len(labels - got)
    gold = report["gold"]
    assert (gold["n_notes"], gold["tp"], gold["fp"], gold["fn"]) == (COHORT, tp, fp, fn)
    assert gold["micro"]["precision"] == pytest.approx(tp / (tp + fp) if tp + fp else 1.0)
    assert gold["micro"]["recall"] == pytest.approx(tp / (tp + fn) if tp + fn else 1.0)
    assert report["gate"]["passed"] == (proc.returncode == 0)
    assert [c["name"] for c in report["gate"]["checks"]] == ["gold-f1", "gold-precision"]
    assert report["decisions"]["written"] == 0 and report["run"]["published"] == COHORT
    months = set(report["per_month"])
    assert months and months <= {f"2025-{m:02d}" for m in range(1, 7)}
    page = Path(report["html"]).read_text()
    assert "retro-2025" in page and all((tmp_path / "report" / p).exists() for p in
                                        ("rate.png", "per-month.png", "gate.png"))
    for row in gold_rows[:3]:  # no note text in the report
        assert row["text"][:40] not in page


async def test_a_note_from_the_real_time_path_is_processed_once(pipeline, wb_tenant, tmp_path):  # noqa: F811
    wb, client = wb_tenant, pipeline.client
    facility = "BATCHWING"
    entry = Registry.load(wb.path).get(wb.tenant)
    Registry(wb.path, [dataclasses.replace(entry, hl7_facilities=(facility,), settings={
        **entry.settings, "hl7_patient_identifier_system": MRN_SYSTEM})]).save()
    registry = Registry.load(wb.path)
    patient = (await client.create({"resourceType": "Patient", "identifier": [
        {"system": MRN_SYSTEM, "value": "MRN0000"}], "name": [{"family": "Twicefed"}]})).id
    onc = (await client.create({"resourceType": "Practitioner", "name": [{"family": "Onco"}]})).id
    await client.create({"resourceType": "CareTeam", "status": "active", "subject": {"reference": f"Patient/{patient}"},
                         "participant": [{"role": [{"coding": [{"system": "http://snomed.info/sct",
                                                                "code": "309295000"}]}],
                                          "member": {"reference": f"Practitioner/{onc}"}}]})
    deps = Hl7Deps(wb.settings, pipeline.secrets, registry=registry, clients={wb.tenant: client}, migrate=False)
    realtime = [*hl7_app.specs(deps, retry=FAST_RETRY, tuning=FAST_TUNING), *pipeline.specs]
    batch = batch_specs(pipeline, wb)
    listener = MllpServer(Hl7Pipeline(registry, crypto.Keyring(wb.pools), pipeline.publishers,
                                      PatientKeys(pipeline.secrets)), "127.0.0.1", 0)
    await listener.start()
    try:
        async with Host(wb, [*realtime, *batch], resources=[deps]):
            # real time: the MDM's note is stored and becomes one Task
            message = mdm(0, "MRN0000").replace(b"|NORTHWING|", f"|{facility}|".encode())
            assert await send_all(listener.port, [message]) == ["AA"]
            await wb.wait(lambda: client.search("Task", {"patient": patient}), timeout=60)
            # the warehouse exports the same note (same document identifier, same text)
            doc_id = documents.document_id(wb.tenant, identifier_system(facility, "document"), "DOC-00000")
            async with wb.pools.tx(wb.tenant, readonly=True) as conn:
                stored = await documents.get(conn, wb.tenant, doc_id)
            text = (await crypto.Keyring(wb.pools).decrypt(wb.tenant, stored.text_sealed,
                                                           documents.TEXT_PURPOSE)).decode()
            export = tmp_path / "export.jsonl"
            export.write_text(json.dumps({"id": "DOC-00000", "identifier_system": identifier_system(facility, "document"),
                                          "mrn": "MRN0000", "text": text}) + "\n")
            row = await run_batch(wb, pipeline, export, "warehouse-export")
            assert (row.seen, row.stored, row.published, row.skipped) == (1, 0, 0, 1)
            await wait_idle(wb.stack, wb.tenant, [*realtime, *batch], timeout=60)
        assert await read_topic(wb.stack, f"vigil.{wb.tenant}.batch-events", 1, timeout=1.5) == []
        assert len(await client.search("Task", {"patient": patient})) == 1
        assert await DecisionLedger(wb.pools).by_run(wb.tenant, "warehouse-export") == []
        async with wb.pools.tx(wb.tenant, readonly=True) as conn:
            versions = await conn.fetchval("SELECT count(*) FROM ingest_documents WHERE id = $1", doc_id)
        assert versions == 1
    finally:
        await listener.stop()
