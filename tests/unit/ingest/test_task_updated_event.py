"""The task-updated event carries what its consumers need of a Vigil Task (decision ids, who
acted, category, grade, model version), so neither triage nor the monitor reads the Task again;
free text never travels, and a Task that is not Vigil's carries none of it."""
from __future__ import annotations

from services.core import schemas, vigiltasks
from services.ingest.events import task_updated
from services.writeback import resources as R


def _input(code: str, **value) -> dict:
    return {"type": {"coding": [{"system": vigiltasks.INPUT_SYSTEM, "code": code}], "text": code}, **value}


def vigil_task(**extra) -> dict:
    return {"resourceType": "Task", "id": "t1", "meta": {"versionId": "3", "lastUpdated": "2026-03-01T10:00:00Z"},
            "status": "rejected", "for": {"reference": "Patient/p1"}, "owner": {"reference": "Practitioner/own"},
            "statusReason": {"coding": [{"system": "x", "code": "not-irae"}]},
            "identifier": [{"system": R.DECISION_SYSTEM, "value": "d1"}, {"system": R.EPISODE_SYSTEM, "value": "e"},
                           {"system": R.DECISION_SYSTEM, "value": "d2"}],
            "input": [_input("finding", valueCodeableConcept={"coding": [{"system": R.CATEGORY_SYSTEM,
                                                                          "code": "colitis"}]}),
                      _input("grade", valueInteger=3), _input("model-version", valueString="rules-9")],
            "note": [{"authorReference": {"reference": "Practitioner/onc-1"}, "text": "Mr Smith had C. diff"}],
            **extra}


def test_a_vigil_task_carries_its_decisions_and_who_acted():
    event = task_updated("t", vigil_task())
    schemas.validate(event.type, event.data)
    d = event.data
    assert (d["decisions"], d["clinician"], d["category"], d["grade"], d["modelVersion"]) == (
        ["d1", "d2"], "Practitioner/onc-1", "colitis", 3, "rules-9")
    assert d["note"] is None and "Smith" not in str(d)   # free text stays in the EHR


def test_without_a_note_author_the_owner_acted_and_other_tasks_carry_nothing():
    d = task_updated("t", vigil_task(note=[])).data
    assert d["clinician"] == "Practitioner/own"
    plain = task_updated("t", {"resourceType": "Task", "id": "x", "meta": {"versionId": "1",
                                                                          "lastUpdated": "2026-03-01T10:00:00Z"},
                               "status": "completed", "for": {"reference": "Patient/p1"}}).data
    assert not {"decisions", "clinician", "category", "grade", "modelVersion"} & set(plain)
    schemas.validate("vigil.ehr.task-updated", plain)
