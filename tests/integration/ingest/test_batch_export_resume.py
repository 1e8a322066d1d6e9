"""`vigil backfill export` as a real subprocess against the sandbox: killed with SIGKILL in the middle of
its downloads, run again with the same directory, it re-polls the same status URL, keeps the files it
had finished, downloads the rest, and the notes read back are exactly the exported ones."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from services.core.integration import IntegrationProfile
from services.core.tenancy import Registry, Tenant
from services.ehr.bulk import snapshot
from services.ingest.batch.bulk_export import STATE_FILE, _file_names
from services.ingest.batch.bulk_ndjson import BulkNdjsonSource
from tests.fixtures import batch_notes

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("bulk-export")]
NOTES = 600
PER_FILE = 100
KILL_DEADLINE_S = 120.0


def _state(directory: Path) -> dict:
    try:
        return json.loads((directory / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}


async def _registry(ehr_tenant, tmp_path: Path, *, batch: bool = True) -> Path:
    creds = await ehr_tenant.admin.new_client(ehr_tenant.tenant, "vigil-ingest", ["system/*.rs"])
    key = tmp_path / "ingest.pem"
    key.write_text(creds.private_key_pem)
    key.chmod(0o600)
    path = tmp_path / "tenants.toml"
    triggers = ("backport-topic", "batch") if batch else ("backport-topic",)
    Registry(path, [Tenant(id=ehr_tenant.tenant, ehr_base_url=ehr_tenant.base_url,
                           integration=IntegrationProfile(triggers=triggers, declared=True),
                           settings={"ehr_client_id": "vigil-ingest", "ehr_private_key_file": str(key),
                                     "ehr_scope": "system/*.rs"})]).save()
    return path


async def _start(registry: Path, tenant: str, directory: Path) -> asyncio.subprocess.Process:
    env = {**os.environ, "VIGIL_TENANTS_FILE": str(registry), "VIGIL_ENV": "test"}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", "backfill", "export", "--tenant", tenant, "--dir", str(directory),
        "--type", "Patient,DocumentReference,Binary", "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)


async def test_export_killed_mid_download_resumes_without_duplicates(ehr_tenant, tmp_path, monkeypatch):
    monkeypatch.setattr(snapshot, "RESOURCES_PER_FILE", PER_FILE)  # the sandbox runs in this process
    await batch_notes.load_into_ehr(ehr_tenant.client, NOTES)
    # every request to the tenant's EHR takes 150 ms: downloads last long enough to be killed in
    await ehr_tenant.admin.set_faults(ehr_tenant.tenant, latency_ms=150)
    out = tmp_path / "export"
    registry = await _registry(ehr_tenant, tmp_path, batch=False)
    refused = await _start(registry, ehr_tenant.tenant, out)
    _, stderr = await refused.communicate()
    assert refused.returncode == 2 and "batch" in stderr.decode()
    registry = await _registry(ehr_tenant, tmp_path)

    proc = await _start(registry, ehr_tenant.tenant, out)
    deadline = time.monotonic() + KILL_DEADLINE_S
    while True:  # no event to wait on across processes: watch the state file, with a deadline
        done = [n for n, s in _state(out).get("files", {}).items() if s == "done"]
        if done:
            break
        assert proc.returncode is None, (await proc.communicate())[1].decode()[-2000:]
        assert time.monotonic() < deadline, "the export did not finish a file in time"
        await asyncio.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    assert proc.returncode == -signal.SIGKILL
    before = _state(out)
    total = len(before["manifest"]["output"])
    finished = {n for n, s in before["files"].items() if s == "done"}
    assert 0 < len(finished) < total, "killed in the middle of the downloads"
    assert {p.name for p in out.glob("*.ndjson")} == finished, "only finished files are in place"
    # a torn write of an unfinished file, as a crash in the middle of it leaves one
    unfinished = next(name for name, _ in _file_names(before["manifest"]["output"]) if name not in finished)
    (out / f"{unfinished}.part").write_bytes(b'{"resourceType":"DocumentReference","id":"torn"')

    proc = await _start(registry, ehr_tenant.tenant, out)
    stdout, stderr = await proc.communicate()
    assert proc.returncode == 0, stderr.decode()[-2000:]
    result = json.loads(stdout)
    after = _state(out)
    assert after["status_url"] == before["status_url"] and after["kicked_off_at"] == before["kicked_off_at"]
    assert result["resumed"] is True and result["downloaded_now"] == total - len(finished)
    assert result["resources"] == {"DocumentReference": NOTES, "Patient": batch_notes.person_count(NOTES),
                                   "Binary": sum(1 for n in batch_notes.notes(NOTES) if batch_notes.uses_binary(n, 5))}
    assert not list(out.glob("*.part")), "no partial file is left"

    source = BulkNdjsonSource.from_directory(out)
    notes = list(source.notes())
    assert source.rejected == 0
    ids = [n.identifier_value for n in notes]
    assert len(ids) == len(set(ids)) == NOTES, "no duplicate, no gap"
    expected = {n.note_id: n for n in batch_notes.notes(NOTES)}
    for note in notes:
        want = expected[note.identifier_value]
        assert (note.text, note.patient_identifier, note.note_time) == \
            (want.text, (batch_notes.MRN_SYSTEM, want.mrn), want.when)
