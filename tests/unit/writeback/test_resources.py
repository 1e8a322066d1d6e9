"""The FHIR resources writeback builds (no servers)."""
from __future__ import annotations

from datetime import datetime, timezone

from services.writeback import resources as R
from services.writeback.deps import supports_transaction

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=timezone.utc)
AI = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "AIAST"}


def decision(**kw) -> dict:
    d = {"decisionId": "d1", "patient": "p1", "category": "colitis", "grade": 2, "kind": "routine-task",
         "owner": "Practitioner/o1", "document": {"id": "doc1", "versionId": "3"},
         "finding": {"start": 5, "end": 20, "quote": "watery diarrhea", "grade": 2, "category": "colitis"},
         "engineVersion": "rules-1", "mode": "active", "episodeKey": "ep1"}
    d.update(kw)
    return d


def by_type(bundle: dict) -> dict:
    return {e["resource"]["resourceType"]: e for e in bundle["entry"]}


def ai(resource: dict) -> bool:
    return any(s["system"] == AI["system"] and s["code"] == "AIAST" for s in resource["meta"].get("security", []))


def test_create_bundle_is_conditional_labelled_and_versioned():
    b = R.create_bundle(decision(), NOW)
    assert b["type"] == "transaction"
    e = by_type(b)
    assert set(e) == {"Device", "Observation", "Task", "Provenance", "AuditEvent"}
    assert e["Task"]["request"]["ifNoneExist"] == f"identifier={R.DECISION_SYSTEM}|d1"
    assert e["Observation"]["request"]["ifNoneExist"] == f"identifier={R.DECISION_SYSTEM}|d1"
    assert e["Device"]["request"]["ifNoneExist"].startswith(f"identifier={R.DEVICE_SYSTEM}|")
    assert "ifNoneExist" not in e["Provenance"]["request"]
    assert [ai(e[t]["resource"]) for t in ("Task", "Observation", "Provenance")] == [True] * 3
    assert not ai(e["Device"]["resource"]) and not ai(e["AuditEvent"]["resource"])
    assert all(R.VIGIL_TAG in x["resource"]["meta"]["tag"] for x in b["entry"])
    task = e["Task"]["resource"]
    assert (task["status"], task["intent"], task["priority"]) == ("requested", "proposal", "routine")
    assert task["focus"]["reference"] == e["Observation"]["fullUrl"]
    assert task["restriction"]["period"] == {"start": "2026-11-22T10:00:00Z", "end": "2026-11-29T10:00:00Z"}
    assert R.task_inputs(task, "source-note") == [{"reference": "DocumentReference/doc1/_history/3"}]
    assert R.task_inputs(task, "evidence-quote") == ["watery diarrhea"]
    assert (R.task_inputs(task, "evidence-start"), R.task_inputs(task, "evidence-end")) == ([5], [20])
    assert R.task_inputs(task, "grade") == [2] and R.task_inputs(task, "model-version") == ["rules-1"]
    prov = e["Provenance"]["resource"]
    assert prov["target"][0]["reference"] == e["Task"]["fullUrl"] + "/_history/1"
    assert prov["agent"][0]["who"]["reference"] == e["Device"]["fullUrl"]
    assert prov["entity"] == [{"role": "derivation", "what": {"reference": "DocumentReference/doc1/_history/3"}}]
    # deterministic: the same decision builds the same bundle
    assert R.create_bundle(decision(), NOW) == b


def test_urgent_decision_uses_a_detected_issue_due_tomorrow():
    b = R.create_bundle(decision(kind="urgent-task", grade=3), NOW)
    e = by_type(b)
    assert "Observation" not in e and e["DetectedIssue"]["resource"]["severity"] == "high"
    assert e["Task"]["resource"]["priority"] == "urgent"
    assert e["Task"]["resource"]["restriction"]["period"]["end"] == "2026-11-23T10:00:00Z"
    exts = {x["url"]: x["valueInteger"] for x in e["DetectedIssue"]["resource"]["extension"]}
    assert exts == {R.EXT_START: 5, R.EXT_END: 20}


def test_update_adds_evidence_first_and_never_lowers_grade_or_priority():
    first = by_type(R.create_bundle(decision(kind="urgent-task", grade=3), NOW))["Task"]["resource"]
    current = {**first, "id": "t1", "meta": {**first["meta"], "versionId": "4"}}
    later = decision(decisionId="d2", grade=1, kind="routine-task", document={"id": "doc2", "versionId": "1"},
                     finding={"start": 0, "end": 4, "quote": "mild", "grade": 1, "category": "colitis"})
    b = R.update_bundle(later, current, NOW)
    e = by_type(b)
    assert e["Task"]["request"] == {"method": "PUT", "url": "Task/t1", "ifMatch": 'W/"4"'}
    task = e["Task"]["resource"]
    assert task["priority"] == "urgent" and R.task_inputs(task, "grade") == [3]
    assert R.task_inputs(task, "evidence-quote") == ["mild", "watery diarrhea"]
    assert [n["reference"] for n in R.task_inputs(task, "source-note")] == [
        "DocumentReference/doc2/_history/1", "DocumentReference/doc1/_history/3"]
    assert R.has_identifier(task, R.DECISION_SYSTEM, "d1") and R.has_identifier(task, R.DECISION_SYSTEM, "d2")
    assert R.has_identifier(task, R.EPISODE_SYSTEM, "ep1")
    assert e["Provenance"]["resource"]["target"][0]["reference"] == "Task/t1/_history/5"
    assert e["AuditEvent"]["resource"]["action"] == "U"


def test_capability_statement_transaction_check():
    assert supports_transaction({"rest": [{"mode": "server", "interaction": [{"code": "transaction"}]}]})
    assert not supports_transaction({"rest": [{"mode": "server", "interaction": [{"code": "batch"}]}]})
    assert not supports_transaction(None)
