"""Server-free checks of the EHR sandbox's pure parts: scopes, search parsing, validation, faults."""
from __future__ import annotations

import pytest

from services.core.fhir import WriteResult
from services.ehr import auth, faults, search, seed, validation, values
from services.ehr.outcome import FhirError


def scopes(*texts: str) -> list[auth.Scope]:
    return [auth.parse_scope(t) for t in texts]


def test_scope_parsing_v1_and_v2():
    assert auth.parse_scope("system/Task.cu") == auth.Scope("Task", "cu")
    assert auth.parse_scope("system/*.read") == auth.Scope("*", "rs")
    assert auth.parse_scope("system/*.write") == auth.Scope("*", "cud")
    assert auth.parse_scope("system/*.*") == auth.Scope("*", "cruds")
    for bad in ("patient/*.read", "system/Task.uc", "system/Task.cc", "system/task.r", "system/Task.rs?x=1", ""):
        with pytest.raises(ValueError):
            auth.parse_scope(bad)


def test_scope_intersection():
    assert auth.intersect(scopes("system/*.cruds"), scopes("system/Task.cu")) == scopes("system/Task.cu")
    assert auth.intersect(scopes("system/Task.rs"), scopes("system/*.read")) == scopes("system/Task.rs")
    assert auth.intersect(scopes("system/Patient.rs"), scopes("system/Task.cruds")) == []
    assert auth.intersect(scopes("system/Task.d"), scopes("system/Task.cu")) == []
    principal = auth.Principal("t1", "c", tuple(scopes("system/Task.cu", "system/*.s")))
    assert principal.allows("Task", "c") and principal.allows("Patient", "s")
    assert not principal.allows("Task", "r") and not principal.allows("Patient", "c")
    with pytest.raises(FhirError) as denied:
        principal.require("Task", "d")
    assert denied.value.status == 403


def test_search_parsing_and_refusals():
    q = search.parse("Task", [("patient", "p1"), ("status", "requested,accepted"), ("_count", "5"),
                              ("authored-on", "ge2024-01-01")])
    assert q.count == 5 and len(q.where) == 3
    assert any('"Patient/p1"' in str(a) for a in q.args)
    assert search.parse("Task", [("_count", "100000")]).count == 500
    for params in ([("nonsense", "1")], [("status:missing", "true")], [("_count", "x")], [("date", "2024")],
                   [("authored-on", "tomorrow")], [("_sort", "status")], [("_format", "xml")], [("patient", "a b")]):
        with pytest.raises(FhirError) as refused:
            search.parse("Task", params)
        assert refused.value.status == 400


def test_date_bounds_by_precision():
    _, low, high = values.date_range("2024-02")
    assert (low.isoformat(), high.isoformat()) == ("2024-02-01T00:00:00+00:00", "2024-03-01T00:00:00+00:00")
    prefix, low, _ = values.date_range("lt2024-05-01T10:00:00+02:00")
    assert prefix == "lt" and low.isoformat() == "2024-05-01T08:00:00+00:00"


def test_validation_checks_structure_and_required_codes():
    ok = {"resourceType": "Task", "status": "requested", "intent": "proposal", "priority": "urgent"}
    assert validation.validate(ok, "Task") is ok
    cases = [({**ok, "status": "invented"}, 422), ({**ok, "intent": "wish"}, 422), ({**ok, "authoredOn": "x"}, 422),
             ({**ok, "extra": 1}, 422), ({**ok, "id": "bad id"}, 400), ({**ok, "resourceType": "Nope"}, 400), ([], 400),
             ({"resourceType": "Appointment", "status": "maybe", "participant": [{"status": "accepted"}]}, 422)]
    for resource, status in cases:
        with pytest.raises(FhirError) as failed:
            validation.validate(resource)
        assert failed.value.status == status, resource
    assert {"Task", "Patient", "Appointment", "Slot", "Bundle"} <= validation.resource_types()
    assert "Address" not in validation.resource_types() and len(validation.resource_types()) == 141


def test_fault_settings_are_validated():
    settings = faults.from_request({"error_rate": 0.25, "error_status": 429, "retry_after_s": 3, "outage_s": 10})
    assert settings.error_status == 429 and settings.active and settings.as_dict()["outage_remaining_s"] > 9
    for body in ({"error_rate": -1}, {"error_status": 404}, {"latency_ms": "fast"}, {"drop_writes": 1}, {"x": 1}, []):
        with pytest.raises(ValueError):
            faults.from_request(body)
    assert not faults.Faults().active


def test_write_result_reads_id_and_version_from_headers():
    result = WriteResult(201, None, "http://h/fhir/t/Task/abc/_history/3", 'W/"3"')
    assert (result.id, result.version, result.created) == ("abc", 3, True)


def test_oncology_seed_bundle_is_valid_and_idempotent():
    bundle = seed.oncology_bundle(notes=3)
    posts = [e for e in bundle["entry"] if e["request"]["method"] == "POST"]
    assert len(posts) == len(bundle["entry"]) and all("ifNoneExist" in e["request"] for e in posts)
    for entry in bundle["entry"]:
        validation.validate(entry["resource"])
    types = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert types.count("DocumentReference") == 3 and types.count("Patient") == 6 and types.count("Slot") >= 30
