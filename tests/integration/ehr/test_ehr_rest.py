"""REST interactions through a real FHIR client (fhirpy) and through services.core.fhir."""
from __future__ import annotations

import asyncio

import httpx
import pytest
from fhirpy import AsyncFHIRClient
from fhirpy.base.exceptions import OperationOutcome, ResourceNotFound

from services.core.errors import ConflictError, NotFoundError

pytestmark = pytest.mark.integration


async def fhirpy_client(ehr_tenant) -> AsyncFHIRClient:
    token = await ehr_tenant.client.access_token()
    return AsyncFHIRClient(ehr_tenant.base_url, authorization=f"Bearer {token}")


async def test_crud_history_and_vread_with_fhirpy(ehr_tenant):
    fhir = await fhirpy_client(ehr_tenant)
    patient = fhir.resource("Patient", identifier=[{"system": "urn:test:mrn", "value": "A1"}],
                            name=[{"family": "Testpatient", "given": ["Una"]}], gender="female")
    await patient.save()
    assert patient.id and patient["meta"]["versionId"] == "1"

    fetched = await fhir.reference("Patient", patient.id).to_resource()
    assert fetched["name"][0]["family"] == "Testpatient"

    patient["gender"] = "other"
    await patient.save()
    assert patient["meta"]["versionId"] == "2"
    await patient.refresh()  # sends If-None-Match; the server answers 304 and the copy stays
    assert patient["gender"] == "other"

    v1 = await fhir.execute(f"Patient/{patient.id}/_history/1", method="get")
    assert v1["gender"] == "female" and v1["meta"]["versionId"] == "1"
    history = await fhir.execute(f"Patient/{patient.id}/_history", method="get")
    assert history["type"] == "history" and history["total"] == 2
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["2", "1"]

    await patient.delete()
    with pytest.raises(ResourceNotFound):  # 410 Gone
        await fhir.get("Patient", patient.id)
    history = await ehr_tenant.client.history("Patient", patient.id)
    assert history["total"] == 3 and history["entry"][0]["request"]["method"] == "DELETE"


async def test_search_parameters_and_paging_with_fhirpy(ehr_tenant):
    c = ehr_tenant.client
    patient = (await c.create({"resourceType": "Patient", "name": [{"family": "Paging"}]})).resource
    other = (await c.create({"resourceType": "Patient", "name": [{"family": "Other"}]})).resource
    for i in range(7):
        await c.create({"resourceType": "Task", "status": "requested" if i % 2 else "completed", "intent": "proposal",
                        "identifier": [{"system": "urn:test:task", "value": f"t{i}"}],
                        "code": {"coding": [{"system": "urn:test:code", "code": "irae"}]},
                        "for": {"reference": f"Patient/{(patient if i < 5 else other)['id']}"},
                        "owner": {"reference": "Practitioner/doc-1"}, "authoredOn": f"2024-05-0{i + 1}T10:00:00Z"})
    fhir = await fhirpy_client(ehr_tenant)
    tasks = fhir.resources("Task")
    assert len(await tasks.search(patient=patient["id"]).fetch_all()) == 5
    assert len(await tasks.search(subject=f"Patient/{other['id']}").fetch_all()) == 2
    assert len(await tasks.search(status="requested").fetch_all()) == 3
    assert len(await tasks.search(status="requested,completed").fetch_all()) == 7
    assert len(await tasks.search(identifier="urn:test:task|t3").fetch_all()) == 1
    assert len(await tasks.search(identifier="urn:test:other|t3").fetch_all()) == 0
    assert len(await tasks.search(owner="Practitioner/doc-1", code="urn:test:code|irae").fetch_all()) == 7
    assert len(await tasks.search(**{"authored-on": "ge2024-05-04"}).fetch_all()) == 4
    assert len(await tasks.search(**{"authored-on": "2024-05-02"}).fetch_all()) == 1
    assert (await tasks.search(_lastUpdated="ge2000-01-01", _summary="count").fetch_raw())["total"] == 7
    # paging: 3 per page, fhirpy follows the next links
    page = await tasks.limit(3).fetch_raw()
    assert len(page["entry"]) == 3 and page["total"] == 7
    assert any(link["relation"] == "next" for link in page["link"])
    assert len(await tasks.limit(3).fetch_all()) == 7
    assert len(await c.search("Task", {"_count": "2"})) == 7  # our client follows next links too
    ids = [t["id"] for t in await c.search("Task", {"_count": "3", "_sort": "-_lastUpdated"})]
    assert len(set(ids)) == 7
    assert len(await tasks.search(_id=ids[0]).fetch_all()) == 1
    with pytest.raises(OperationOutcome):
        await tasks.search(nonsense="x").fetch()


async def test_prefer_return_and_headers(ehr_tenant):
    token = await ehr_tenant.client.access_token()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}
    body = {"resourceType": "Observation", "status": "final", "code": {"text": "heart rate"}}
    async with httpx.AsyncClient() as http:
        minimal = await http.post(f"{ehr_tenant.base_url}/Observation", json=body,
                                  headers={**headers, "Prefer": "return=minimal"})
        assert minimal.status_code == 201 and minimal.content == b""
        assert minimal.headers["etag"] == 'W/"1"' and "/_history/1" in minimal.headers["location"]
        full = await http.post(f"{ehr_tenant.base_url}/Observation", json=body,
                               headers={**headers, "Prefer": "return=representation"})
        assert full.json()["status"] == "final" and full.headers["content-type"].startswith("application/fhir+json")
        outcome = await http.post(f"{ehr_tenant.base_url}/Observation", json=body,
                                  headers={**headers, "Prefer": "return=OperationOutcome"})
        assert outcome.json()["resourceType"] == "OperationOutcome"


async def test_if_match_conflicts(ehr_tenant):
    c = ehr_tenant.client
    task = (await c.create({"resourceType": "Task", "status": "requested", "intent": "proposal"})).resource
    updated = await c.update({**task, "status": "accepted"}, if_match=1)
    assert updated.version == 2
    with pytest.raises(ConflictError) as stale:
        await c.update({**task, "status": "rejected"}, if_match=1)
    assert stale.value.status == 412 and stale.value.outcome["issue"][0]["code"] == "conflict"
    assert (await c.read("Task", task["id"]))["status"] == "accepted"
    # two writers racing with the same version: exactly one wins
    results = await asyncio.gather(*(c.update({**task, "status": s}, if_match=2) for s in ("completed", "cancelled")),
                                   return_exceptions=True)
    assert sorted(type(r).__name__ for r in results) == ["ConflictError", "WriteResult"]
    assert (await c.read("Task", task["id"]))["meta"]["versionId"] == "3"


async def test_conditional_create_is_race_safe(ehr_tenant):
    c = ehr_tenant.client
    task = {"resourceType": "Task", "status": "requested", "intent": "proposal",
            "identifier": [{"system": "urn:vigil:idempotency", "value": "k-123"}]}
    criteria = "identifier=urn:vigil:idempotency|k-123"
    results = await asyncio.gather(*(c.create(task, if_none_exist=criteria) for _ in range(8)))
    assert sorted(r.status for r in results) == [200] * 7 + [201]
    assert len({r.id for r in results}) == 1
    assert len(await c.search("Task", {"identifier": "urn:vigil:idempotency|k-123"})) == 1
    # two matches -> 412
    await c.create(task)
    with pytest.raises(ConflictError) as several:
        await c.create(task, if_none_exist=criteria)
    assert several.value.status == 412
    # fhirpy's conditional create (criteria as query parameters) gets the same answer
    fhir = await fhirpy_client(ehr_tenant)
    one = fhir.resource("Patient", identifier=[{"system": "urn:test", "value": "only"}])
    await one.create(identifier="urn:test|only")
    again = fhir.resource("Patient", identifier=[{"system": "urn:test", "value": "only"}])
    await again.create(identifier="urn:test|only")
    assert again.id == one.id


async def test_read_errors_and_capability(ehr_tenant):
    c = ehr_tenant.client
    assert c.capabilities["resourceType"] == "CapabilityStatement" and c.capabilities["fhirVersion"] == "4.3.0"
    rest = c.capabilities["rest"][0]
    task = next(r for r in rest["resource"] if r["type"] == "Task")
    assert {"owner", "status", "patient", "identifier", "_lastUpdated"} <= {p["name"] for p in task["searchParam"]}
    appointment = next(r for r in rest["resource"] if r["type"] == "Appointment")
    assert {o["name"] for o in appointment["operation"]} == {"find", "book"}
    assert {i["code"] for i in rest["interaction"]} == {"transaction", "batch"}
    with pytest.raises(NotFoundError):
        await c.read("Task", "does-not-exist")
    with pytest.raises(NotFoundError) as unknown:
        await c.read("Spaceship", "1")
    assert unknown.value.outcome["issue"][0]["code"] == "not-supported"


async def test_tenants_are_isolated(ehr_server, ehr_tenant):
    created = await ehr_tenant.client.create({"resourceType": "Patient", "name": [{"family": "Private"}]})
    async with ehr_server.admin() as admin:
        other = "t" + created.id.replace("-", "")[:12]
        await admin.create_tenant(other)
        creds = await admin.new_client(other, "other-app", ["system/*.cruds"])
    from services.core.fhir import FhirClient

    async with FhirClient(ehr_server.base(other), credentials=creds) as theirs:
        with pytest.raises(NotFoundError):
            await theirs.read("Patient", created.id)
        assert await theirs.search("Patient") == []
        # their token is refused by our tenant's EHR
        token = await theirs.access_token()
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{ehr_tenant.base_url}/Patient/{created.id}",
                                  headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401 and response.json()["resourceType"] == "OperationOutcome"
