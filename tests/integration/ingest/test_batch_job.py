"""Batch runs (`vigil backfill run`): SIGKILL mid-run and resume -> every note stored once and
published (no gap, no second version, one event id per note); `vigil backfill status --json`;
a name taken by another source, an unknown kind and a kind without a reader are clear errors."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from services.core.tenancy import Registry
from services.ingest.batch import job as batch_job
from services.ingest.hl7.patientkey import PatientKeys
from services.ingest.store import documents
from tests.fixtures.batch_source import CRASH_VARIABLE, DEFAULT_SYSTEM, SLOW_VARIABLE, JsonlSource
from tests.integration.ingest.conftest import read_topic

REPO = Path(__file__).resolve().parents[3]
TUNE = REPO / "tests" / "data" / "realistic" / "tune.jsonl"
NOTES = 45
CHUNK = 7
#: The reader kills its process while reading this line: the chunk holding it (lines 29-35) is open.
CRASH_AT = 31

pytestmark = pytest.mark.xdist_group("batch-job")


def write_notes(path: Path, n: int, prefix: str) -> list[str]:
    rows = [json.loads(line) for line in TUNE.read_text().splitlines() if line.strip()]
    ids = []
    with path.open("w") as out:
        for i in range(n):
            row = dict(rows[i % len(rows)], id=f"{prefix}-{i:05d}", note_time=f"2025-{1 + i % 12:02d}-15T10:00:00Z")
            ids.append(row["id"])
            out.write(json.dumps(row) + "\n")
    return ids


def cli_env(ingest, path: Path, **extra) -> dict:
    return dict(os.environ, VIGIL_KAFKA_BOOTSTRAP=ingest.settings.kafka.bootstrap, VIGIL_REDIS_URL=ingest.settings.redis_url,
                VIGIL_POSTGRES_DSN=ingest.settings.postgres_dsn, VIGIL_TENANTS_FILE=str(path), VIGIL_ENV="test",
                VIGIL_LOG_LEVEL="warning", **extra)


async def vigil(env: dict, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "tests.fixtures.batch_cli", *args, cwd=str(REPO),
                                                env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 180)
    return proc.returncode, out.decode(), err.decode()


async def test_sigkill_mid_run_then_resume_stores_and_publishes_every_note_once(ingest, tmp_path):
    tenant = ingest.tenant.id
    registry = tmp_path / "tenants.toml"
    Registry(registry, [ingest.tenant]).save()
    notes = tmp_path / "notes.jsonl"
    ids = write_notes(notes, NOTES, "kill")
    run = ["backfill", "run", "--tenant", tenant, "--source", "jsonl", str(notes), "--name", "kill-run", "--silent",
           "--chunk", str(CHUNK), "--quiet"]

    # 1. the reader dies (SIGKILL) inside the fifth chunk
    code, _, _ = await vigil(cli_env(ingest, registry, **{CRASH_VARIABLE: str(CRASH_AT)}), *run)
    assert code == -signal.SIGKILL
    row = await batch_job.get(ingest.pools, tenant, "kill-run")
    assert row.state == "running" and row.position == str(28) and row.seen == 28 and row.published == 28

    # 2. a second crash at a moment the test does not choose: SIGKILL from outside while the run goes on
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "tests.fixtures.batch_cli", *run, cwd=str(REPO),
                                                env=cli_env(ingest, registry, **{SLOW_VARIABLE: "0.05"}),
                                                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while (await batch_job.get(ingest.pools, tenant, "kill-run")).seen < 35:
        assert loop.time() < deadline and proc.returncode is None, "the resumed run made no progress"
        await asyncio.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    killed_at = await batch_job.get(ingest.pools, tenant, "kill-run")
    assert killed_at.state == "running" and 35 <= killed_at.seen < NOTES

    # 3. resume to the end
    code, out, err = await vigil(cli_env(ingest, registry), *run)
    assert code == 0, err
    assert f"{NOTES} seen, {NOTES} stored, {NOTES} published, 0 skipped" in out
    row = await batch_job.get(ingest.pools, tenant, "kill-run")
    assert (row.state, row.seen, row.stored, row.published, row.skipped) == ("done", NOTES, NOTES, NOTES, 0)

    # the store: every note exactly once (version 1), the text as the source had it
    expected = {documents.document_id(tenant, DEFAULT_SYSTEM, i): i for i in ids}
    async with ingest.pools.tx(tenant, readonly=True) as conn:
        rows = await conn.fetch("SELECT id, version FROM ingest_documents WHERE tenant = $1", tenant)
        first = await documents.get(conn, tenant, documents.document_id(tenant, DEFAULT_SYSTEM, ids[CRASH_AT]))
    assert sorted((r["id"], r["version"]) for r in rows) == sorted((d, 1) for d in expected)
    source_text = json.loads(notes.read_text().splitlines()[CRASH_AT])["text"]
    assert (await ingest.keyring.decrypt(tenant, first.text_sealed, documents.TEXT_PURPOSE)).decode() == source_text

    # the topic: every note's event (no gap); a repeat only ever carries the same deterministic id
    records = await read_topic(ingest.settings, ingest.topic("batch-events"), NOTES, timeout=30, settle=1.5)
    from services.core.events import decode
    events = [decode(r.key, r.value, r.headers) for r in records]
    by_doc: dict[str, set[str]] = {}
    for e in events:
        assert e.data["run"] == "kill-run" and e.data["source"] == "store" and e.data["origin"] == "batch"
        by_doc.setdefault(e.data["id"], set()).add(e.id)
    assert set(by_doc) == set(expected)
    assert all(len(event_ids) == 1 for event_ids in by_doc.values())

    # running the finished run again does nothing
    code, out, _ = await vigil(cli_env(ingest, registry), *run)
    assert code == 0 and f"{NOTES} published" in out
    assert len(await read_topic(ingest.settings, ingest.topic("batch-events"), len(records), timeout=10,
                                settle=1.0)) == len(records)

    # status, as JSON
    code, out, _ = await vigil(cli_env(ingest, registry), "backfill", "status", "--tenant", tenant, "--json")
    assert code == 0
    [status] = json.loads(out)
    assert {k: status[k] for k in ("tenant", "name", "source_kind", "seen", "stored", "published", "skipped",
                                   "state", "total")} == {
        "tenant": tenant, "name": "kill-run", "source_kind": "jsonl", "seen": NOTES, "stored": NOTES,
        "published": NOTES, "skipped": 0, "state": "done", "total": NOTES}
    assert status["rate"] is not None and status["rate"] > 0


async def test_same_note_twice_and_a_new_version(ingest, tmp_path):
    """In-process: a note repeated in the source is skipped; the same identifier with new text is version 2."""
    tenant = ingest.tenant.id
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_text("\n".join(json.dumps(r) for r in [
        {"id": "n1", "text": "Grade 2 colitis on nivolumab.", "patient_id": "p1"},
        {"id": "n1", "text": "Grade 2 colitis on nivolumab.", "patient_id": "p1"},
        {"id": "n2", "text": None, "content_type": "application/pdf", "patient_id": "p2"}]) + "\n")
    second.write_text(json.dumps({"id": "n1", "text": "Addendum: grade 3 colitis.", "patient_id": "p1"}) + "\n")
    keys = PatientKeys(ingest.pools.secrets)
    rows = []
    for name, path in (("r1", first), ("r2", second)):
        job = batch_job.BatchJob(tenant, name, "jsonl", JsonlSource(path), pools=ingest.pools, keyring=ingest.keyring,
                                 publishers=ingest.publishers, patient_keys=keys)
        rows.append(await job.run())
    assert [(r.seen, r.stored, r.published, r.skipped, r.no_text) for r in rows] == [(3, 2, 1, 1, 1), (1, 1, 1, 0, 0)]
    events = await ingest.events("batch-events", want=2)
    assert sorted((e.data["versionId"], e.data["action"], e.data["run"]) for e in events) == [
        ("1", "create", "r1"), ("2", "update", "r2")]


async def test_cli_errors_are_clear(ingest, tmp_path):
    tenant = ingest.tenant.id
    registry = tmp_path / "tenants.toml"
    Registry(registry, [ingest.tenant]).save()
    notes = tmp_path / "n.jsonl"
    write_notes(notes, 3, "err")
    env = cli_env(ingest, registry)
    code, _, err = await vigil(env, "backfill", "run", "--tenant", tenant, "--source", "omop", str(notes), "--name", "x")
    assert code == 2 and "the NOTE table needs the columns note_id, person_id" in err  # not an OMOP NOTE file
    code, _, err = await vigil(env, "backfill", "run", "--tenant", tenant, "--source", "csv", str(notes), "--name", "x")
    assert code == 2 and "unknown source kind 'csv'" in err
    code, _, err = await vigil(env, "backfill", "run", "--tenant", tenant, "--source", "jsonl", str(notes),
                               "--name", "bad name!")
    assert code == 2 and "run name" in err
    code, _, err = await vigil(env, "backfill", "run", "--tenant", tenant, "--source", "jsonl", str(notes),
                               "--name", "x", "--no-silent")
    assert code == 2 and "silent" in err
    code, _, _ = await vigil(env, "backfill", "run", "--tenant", tenant, "--source", "jsonl", str(notes), "--name",
                             "taken", "--quiet")
    assert code == 0
    other = tmp_path / "other.jsonl"
    write_notes(other, 2, "other")
    code, _, err = await vigil(env, "backfill", "run", "--tenant", tenant, "--source", "jsonl", str(other), "--name",
                               "taken", "--quiet")
    assert code == 2 and "already exists" in err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "ok", "text": "fine", "patient_id": "p"}\nnot json\n')
    code, _, err = await vigil(env, "backfill", "run", "--tenant", tenant, "--source", "jsonl", str(bad), "--name",
                               "broken", "--quiet")
    assert code == 2 and "bad.jsonl:2" in err
    assert (await batch_job.get(ingest.pools, tenant, "broken")).state == "failed"


async def test_the_same_run_in_two_processes_is_refused_at_the_checkpoint(ingest, tmp_path):
    tenant = ingest.tenant.id
    notes = tmp_path / "n.jsonl"
    write_notes(notes, 6, "twice")
    keys = PatientKeys(ingest.pools.secrets)

    def job() -> batch_job.BatchJob:
        return batch_job.BatchJob(tenant, "twice", "jsonl", JsonlSource(notes), pools=ingest.pools,
                                  keyring=ingest.keyring, publishers=ingest.publishers, patient_keys=keys, chunk=3)
    first, second = job(), job()
    stale = await first.open()
    await second.run(max_chunks=1)  # the other process checkpointed after note 3
    with pytest.raises(batch_job.BatchJobError, match="another process"):
        await first._chunk(list(first.source.notes())[:3], stale)
    done = await second.run()
    assert (done.seen, done.stored, done.published, done.state) == (6, 6, 6, "done")
