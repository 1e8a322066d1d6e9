"""Transaction and batch Bundles, including the Synthea sample loaded as-is."""
from __future__ import annotations

import json

import pytest

from services.core.errors import ConflictError, FatalError

pytestmark = pytest.mark.integration


async def test_synthea_bundle_loads_as_a_transaction(ehr_tenant, shared_data):
    c = ehr_tenant.client
    bundle = json.loads((shared_data / "synthea" / "sample_complete_patient.json").read_text())
    response = await c.transaction(bundle)
    assert response["type"] == "transaction-response" and len(response["entry"]) == 314
    assert all(e["response"]["status"] == "201 Created" for e in response["entry"])
    patient_id = response["entry"][0]["response"]["location"].split("/")[1]
    patient = await c.read("Patient", patient_id)
    assert patient["name"][0]["family"] == "Gerlach374"
    # urn:uuid references were rewritten to the new server ids
    encounters = await c.search("Encounter", {"patient": patient_id})
    assert len(encounters) == 37
    notes = await c.search("DocumentReference", {"subject": f"Patient/{patient_id}", "_count": "10"})
    assert len(notes) == 37 and all(n["subject"]["reference"] == f"Patient/{patient_id}" for n in notes)
    provenance = (await c.search("Provenance"))[0]
    assert len(provenance["target"]) == 313 and not any("urn:uuid" in t["reference"] for t in provenance["target"])
    # conditional references resolved: one placeholder per distinct identifier, shared by all uses
    practitioners = await c.search("Practitioner")
    assert len(practitioners) == 2
    npis = {p["identifier"][0]["value"] for p in practitioners}
    assert npis == {"9999999559", "9999962229"}
    prac = await c.search("Practitioner", {"identifier": "http://hl7.org/fhir/sid/us-npi|9999999559"})
    encounter_refs = {p["individual"]["reference"] for e in encounters for p in e.get("participant", [])}
    assert f"Practitioner/{prac[0]['id']}" in encounter_refs
    assert len(await c.search("Organization")) == 2 and len(await c.search("Location")) == 2


def _task(identifier: str, status: str = "requested") -> dict:
    return {"resourceType": "Task", "status": status, "intent": "proposal",
            "identifier": [{"system": "urn:test:key", "value": identifier}]}


async def test_transaction_rolls_back_as_a_whole(ehr_tenant):
    c = ehr_tenant.client
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:p1", "resource": {"resourceType": "Patient", "name": [{"family": "Rollback"}]},
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {**_task("rb-1"), "for": {"reference": "urn:uuid:p1"}}, "request": {"method": "POST", "url": "Task"}},
        # the third entry fails at write time (If-Match on a resource that does not exist)
        {"resource": {**_task("rb-2"), "id": "nope"}, "request": {"method": "PUT", "url": "Task/nope",
                                                                  "ifMatch": 'W/"4"'}},
    ]}
    with pytest.raises(ConflictError) as failed:
        await c.transaction(bundle)
    assert failed.value.status == 412
    assert "Bundle.entry[2]" in failed.value.outcome["issue"][0]["diagnostics"]
    assert await c.search("Patient", {"_count": "5"}) == [] and await c.search("Task") == []
    # a validation error anywhere fails the whole bundle before anything is written
    bundle["entry"][2] = {"resource": {"resourceType": "Task", "status": "bogus", "intent": "proposal"},
                          "request": {"method": "POST", "url": "Task"}}
    with pytest.raises(FatalError) as invalid:
        await c.transaction(bundle)
    assert invalid.value.status == 422 and invalid.value.outcome["issue"][0]["code"] == "code-invalid"
    assert await c.search("Patient") == []


async def test_transaction_references_if_none_exist_and_if_match(ehr_tenant):
    c = ehr_tenant.client
    existing = (await c.create(_task("dup-1"))).resource
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:task", "resource": _task("dup-1"),
         "request": {"method": "POST", "url": "Task", "ifNoneExist": "identifier=urn:test:key|dup-1"}},
        {"fullUrl": "urn:uuid:obs", "resource": {"resourceType": "Observation", "status": "preliminary",
                                                 "code": {"text": "finding"}},
         "request": {"method": "POST", "url": "Observation"}},
        {"resource": {"resourceType": "Provenance", "recorded": "2024-05-01T10:00:00Z",
                      "target": [{"reference": "urn:uuid:task"}, {"reference": "urn:uuid:obs"}],
                      "agent": [{"who": {"display": "rules engine"}}]},
         "request": {"method": "POST", "url": "Provenance"}},
        {"resource": {**existing, "status": "accepted"},
         "request": {"method": "PUT", "url": f"Task/{existing['id']}", "ifMatch": 'W/"1"'}},
    ]}
    response = await c.transaction(bundle, prefer="representation")
    statuses = [e["response"]["status"] for e in response["entry"]]
    assert statuses == ["200 OK", "201 Created", "201 Created", "200 OK"]
    obs_id = response["entry"][1]["response"]["location"].split("/")[1]
    provenance = response["entry"][2]["resource"]
    assert provenance["target"] == [{"reference": f"Task/{existing['id']}"}, {"reference": f"Observation/{obs_id}"}]
    assert (await c.read("Task", existing["id"]))["meta"]["versionId"] == "2"
    assert len(await c.search("Task")) == 1
    # unresolvable urn:uuid references are refused
    bad = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                      "subject": {"reference": "urn:uuid:missing"}}, "request": {"method": "POST", "url": "Observation"}}]}
    with pytest.raises(FatalError) as unresolved:
        await c.transaction(bad)
    assert unresolved.value.status == 400


async def test_batch_reports_each_entry(ehr_tenant):
    c = ehr_tenant.client
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": _task("b-1"), "request": {"method": "POST", "url": "Task"}},
        {"resource": {"resourceType": "Task", "status": "nope", "intent": "proposal"},
         "request": {"method": "POST", "url": "Task"}},
        {"request": {"method": "GET", "url": "Task?identifier=urn:test:key|b-1"}},
        {"request": {"method": "GET", "url": "Task/missing"}},
    ]}
    response = await c.transaction(bundle)
    assert response["type"] == "batch-response"
    statuses = [e["response"]["status"] for e in response["entry"]]
    assert statuses[0] == "201 Created" and statuses[1] == "422" and statuses[2] == "200 OK" and statuses[3] == "404"
    assert response["entry"][1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert response["entry"][2]["resource"]["total"] == 1
