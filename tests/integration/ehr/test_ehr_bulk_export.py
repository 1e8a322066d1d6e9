"""The sandbox's Bulk Data ``$export`` (system, Patient, Group) driven over HTTP, raw and through
the ingest client (``services.ingest.batch.bulk_export``): kick-off, 202 polling with
Retry-After, the manifest, authenticated downloads, cancellation, and the notes read back."""
from __future__ import annotations

import json

import httpx
import pytest

from services.ehr.bulk import snapshot
from services.ingest.batch import bulk_export
from services.ingest.batch.bulk_export import ExportRequest
from tests.fixtures import batch_notes

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("bulk-export")]
NOTES = 120


async def _raw(ehr_tenant, method: str, url: str, **kwargs) -> httpx.Response:
    token = await ehr_tenant.client.access_token()
    headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.request(method, url, headers=headers, **kwargs)


async def _until_done(ehr_tenant, status_url: str) -> tuple[httpx.Response, list[httpx.Response]]:
    """Poll as a client would (waiting Retry-After); returns the final answer and the 202s seen."""
    import asyncio

    seen = []
    for _ in range(100):
        response = await _raw(ehr_tenant, "GET", status_url)
        if response.status_code != 202:
            return response, seen
        seen.append(response)
        await asyncio.sleep(float(response.headers["retry-after"]))
    raise AssertionError("the export never completed")


async def test_system_export_kickoff_poll_manifest_and_files(ehr_tenant, tmp_path):
    written = await batch_notes.load_into_ehr(ehr_tenant.client, NOTES)
    await ehr_tenant.admin.set_faults(ehr_tenant.tenant, export_delay_s=2)
    kick = await _raw(ehr_tenant, "GET", f"{ehr_tenant.base_url}/$export",
                      params={"_type": "Patient,DocumentReference,Binary", "_outputFormat": "application/fhir+ndjson"},
                      headers={"Prefer": "respond-async", "Accept": "application/fhir+json"})
    assert kick.status_code == 202, kick.text
    status_url = kick.headers["content-location"]
    assert status_url.startswith(f"{ehr_tenant.base_url}/$export-status/")
    done, in_progress = await _until_done(ehr_tenant, status_url)
    assert in_progress, "the export_delay_s fault keeps the job in progress for 2 s"
    assert all(r.headers["retry-after"].isdigit() and r.headers.get("x-progress") for r in in_progress)
    assert done.status_code == 200
    manifest = done.json()
    assert manifest["requiresAccessToken"] is True and manifest["error"] == []
    assert manifest["request"].startswith(f"{ehr_tenant.base_url}/$export?")
    counts = {}
    for entry in manifest["output"]:
        counts[entry["type"]] = counts.get(entry["type"], 0) + entry["count"]
    binaries = sum(1 for n in batch_notes.notes(NOTES) if batch_notes.uses_binary(n, 5))
    assert counts == {"DocumentReference": written, "Patient": batch_notes.person_count(NOTES), "Binary": binaries}

    entry = next(e for e in manifest["output"] if e["type"] == "DocumentReference")
    async with httpx.AsyncClient() as http:
        anonymous = await http.get(entry["url"])
    assert anonymous.status_code == 401
    body = await _raw(ehr_tenant, "GET", entry["url"])
    assert body.status_code == 200 and body.headers["content-type"].startswith("application/fhir+ndjson")
    lines = body.content.decode().splitlines()
    assert len(lines) == entry["count"]
    ids = [json.loads(line)["id"] for line in lines]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    again = await _raw(ehr_tenant, "GET", entry["url"])
    assert again.content == body.content, "a file is the same on every download"

    # another client of the same tenant can neither poll nor download this export
    other = await ehr_tenant.new_client("other-reader", ["system/*.rs"])
    token = await other.access_token()
    async with httpx.AsyncClient() as http:
        for url in (status_url, entry["url"]):
            assert (await http.get(url, headers={"Authorization": f"Bearer {token}"})).status_code == 404

    # a note updated after the transaction time: unchanged in this export, the only thing a _since export holds
    first = next(iter(batch_notes.notes(1)))
    changed = next(iter(batch_notes.notes(1, seed=99)))  # same note id, another time
    assert changed.when != first.when
    await ehr_tenant.client.update(batch_notes.document_resource(changed,
                                                                 patient_ref=f"Patient/{first.patient_fhir_id}"))
    again = await _raw(ehr_tenant, "GET", entry["url"])
    assert again.content == body.content, "the export is a snapshot at its transactionTime"
    later = await _raw(ehr_tenant, "GET", f"{ehr_tenant.base_url}/$export",
                       params={"_type": "DocumentReference", "_since": manifest["transactionTime"]},
                       headers={"Prefer": "respond-async"})
    await ehr_tenant.admin.clear_faults(ehr_tenant.tenant)
    done, _ = await _until_done(ehr_tenant, later.headers["content-location"])
    assert [(e["type"], e["count"]) for e in done.json()["output"]] == [("DocumentReference", 1)]


async def test_kickoff_refusals_and_cancel(ehr_tenant):
    base = ehr_tenant.base_url
    no_prefer = await _raw(ehr_tenant, "GET", f"{base}/$export")
    assert no_prefer.status_code == 400 and "respond-async" in no_prefer.json()["issue"][0]["diagnostics"]
    async_ = {"Prefer": "respond-async"}
    for params, status in (({"_type": "NotAType"}, 400), ({"_outputFormat": "text/csv"}, 400),
                           ({"_since": "yesterday"}, 400), ({"_typeFilter": "Patient?gender=male"}, 400)):
        response = await _raw(ehr_tenant, "GET", f"{base}/$export", params=params, headers=async_)
        assert response.status_code == status, (params, response.text)
        assert response.json()["resourceType"] == "OperationOutcome"
    lenient = await _raw(ehr_tenant, "GET", f"{base}/$export", params={"_typeFilter": "Patient?gender=male"},
                         headers={"Prefer": "respond-async, handling=lenient"})
    assert lenient.status_code == 202
    outside = await _raw(ehr_tenant, "GET", f"{base}/Patient/$export", params={"_type": "Practitioner"},
                         headers=async_)
    assert outside.status_code == 400
    missing_group = await _raw(ehr_tenant, "GET", f"{base}/Group/nope/$export", headers=async_)
    assert missing_group.status_code == 404
    narrow = await ehr_tenant.new_client("patients-only", ["system/Patient.rs"])
    token = await narrow.access_token()
    async with httpx.AsyncClient() as http:
        forbidden = await http.get(f"{base}/$export", params={"_type": "DocumentReference"},
                                   headers={"Authorization": f"Bearer {token}", **async_})
    assert forbidden.status_code == 403

    await ehr_tenant.admin.set_faults(ehr_tenant.tenant, export_delay_s=60)
    kick = await _raw(ehr_tenant, "GET", f"{base}/$export", headers=async_)
    status_url = kick.headers["content-location"]
    assert (await _raw(ehr_tenant, "GET", status_url)).status_code == 202
    cancelled = await _raw(ehr_tenant, "DELETE", status_url)
    assert cancelled.status_code == 202
    assert (await _raw(ehr_tenant, "GET", status_url)).status_code == 404
    assert (await _raw(ehr_tenant, "DELETE", status_url)).status_code == 404


async def test_group_and_patient_exports_through_the_client(ehr_tenant, tmp_path):
    await batch_notes.load_into_ehr(ehr_tenant.client, NOTES)
    members = sorted({n.patient_fhir_id for n in batch_notes.notes(NOTES)})[:2]
    await ehr_tenant.client.update({"resourceType": "Group", "id": "cohort", "type": "person", "actual": True,
                                    "member": [{"entity": {"reference": f"Patient/{p}"}} for p in members]})
    group = await bulk_export.export(ehr_tenant.client, tmp_path / "group",
                                     ExportRequest("group", "cohort", ("Patient", "DocumentReference")))
    assert group.resources == {"DocumentReference": 2 * batch_notes.NOTES_PER_PERSON, "Patient": 2}
    wanted = {n.note_id: n for n in batch_notes.notes(NOTES) if n.patient_fhir_id in members}
    # a Group export holds no Binary: the client read the referenced ones into Binary.fetched.ndjson
    assert group.binaries_fetched == sum(1 for n in wanted.values() if batch_notes.uses_binary(n, 5)) > 0
    got = list(group.source().notes())
    assert {n.identifier_value: (n.text, n.patient_identifier[1], n.note_time) for n in got} == \
        {k: (n.text, n.mrn, n.when) for k, n in wanted.items()}

    everyone = await bulk_export.export(ehr_tenant.client, tmp_path / "patients",
                                        ExportRequest("patient", types=("DocumentReference",)))
    assert everyone.resources == {"DocumentReference": NOTES}


async def test_large_export_is_split_into_files(ehr_tenant, tmp_path, monkeypatch):
    monkeypatch.setattr(snapshot, "RESOURCES_PER_FILE", 50)
    await batch_notes.load_into_ehr(ehr_tenant.client, NOTES)
    result = await bulk_export.export(ehr_tenant.client, tmp_path, ExportRequest(types=("DocumentReference",)))
    assert result.files == ["DocumentReference.1.ndjson", "DocumentReference.2.ndjson", "DocumentReference.3.ndjson"]
    notes = list(result.source().notes())
    assert [n.identifier_value for n in notes] == [n.note_id for n in sorted(batch_notes.notes(NOTES),
                                                                            key=lambda n: f"doc-{n.note_id}")]


async def test_a_job_whose_planner_died_is_taken_over_by_the_next_poll(ehr_tenant, stack):
    from services.core.db import create_pool

    await batch_notes.load_into_ehr(ehr_tenant.client, 40)
    kick = await _raw(ehr_tenant, "GET", f"{ehr_tenant.base_url}/$export", params={"_type": "DocumentReference"},
                      headers={"Prefer": "respond-async"})
    status_url = kick.headers["content-location"]
    first, _ = await _until_done(ehr_tenant, status_url)
    # as a server restart leaves it: in progress, nothing planned, no heartbeat for an hour
    pool = await create_pool(stack, min_size=1, max_size=1)
    try:
        await pool.execute("UPDATE ehr_export_jobs SET status='in-progress', files='[]'::jsonb, progress='accepted', "
                           "heartbeat=now() - interval '1 hour' WHERE tenant=$1 AND id=$2",
                           ehr_tenant.tenant, status_url.rsplit("/", 1)[1])
    finally:
        await pool.close()
    taken_over = await _raw(ehr_tenant, "GET", status_url)
    assert taken_over.status_code == 202
    done, _ = await _until_done(ehr_tenant, status_url)
    assert done.json() == first.json()


async def test_the_client_waits_what_the_server_asks(ehr_tenant, tmp_path):
    import asyncio

    await batch_notes.load_into_ehr(ehr_tenant.client, 20)
    await ehr_tenant.admin.set_faults(ehr_tenant.tenant, export_delay_s=3)
    waits, events = [], []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        await asyncio.sleep(seconds)

    result = await bulk_export.export(ehr_tenant.client, tmp_path, ExportRequest(types=("DocumentReference",)),
                                      sleep=sleep, on_event=lambda kind, info: events.append(kind))
    assert waits[0] == 3.0 and all(w <= 3.0 for w in waits), waits
    assert events[0] == "kicked-off" and "in-progress" in events and events[-1] == "downloaded"
    assert result.resources == {"DocumentReference": 20} and result.polls == len(waits) + 1
    # run again on a finished directory: nothing is asked of the server but nothing is lost either
    again = await bulk_export.export(ehr_tenant.client, tmp_path, ExportRequest(types=("DocumentReference",)))
    assert again.resumed and again.downloaded == 0 and again.polls == 0 and again.files == result.files
    with pytest.raises(bulk_export.ExportError, match="another export"):
        await bulk_export.export(ehr_tenant.client, tmp_path, ExportRequest(types=("Patient",)))


def test_poll_waits_are_capped():
    assert bulk_export.next_wait(3600.0, 1.0) == bulk_export.POLL_MAX_S
    assert bulk_export.next_wait(None, 8.0) == 8.0 and bulk_export.next_wait(2.0, 8.0) == 2.0


async def test_a_busy_server_is_asked_again_after_its_retry_after(ehr_tenant, tmp_path, monkeypatch):
    from services.ehr.bulk import operations

    await batch_notes.load_into_ehr(ehr_tenant.client, 10)
    monkeypatch.setattr(operations, "MAX_ACTIVE_JOBS", 0)  # every kick-off is refused with 429 + Retry-After
    waits = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 2:
            monkeypatch.setattr(operations, "MAX_ACTIVE_JOBS", 5)

    result = await bulk_export.export(ehr_tenant.client, tmp_path, ExportRequest(types=("DocumentReference",)),
                                      sleep=sleep)
    assert waits[:2] == [operations.MAX_RETRY_AFTER_S] * 2 and result.resources == {"DocumentReference": 10}
    with pytest.raises(bulk_export.ExportError, match="refused"):
        await bulk_export.export(ehr_tenant.client, tmp_path / "outside",
                                 ExportRequest("patient", types=("Practitioner",)))
