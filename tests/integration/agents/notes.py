"""Notes and events used by the agent stage tests."""
from __future__ import annotations

import base64
import uuid

from services.core.events import Event

COLITIS_G3 = ("Oncology clinic follow-up. Cycle 6 of pembrolizumab for metastatic melanoma.\n"
              "Assessment: grade 3 immune-mediated colitis with 8 stools per day.\n"
              "Plan: hold pembrolizumab, start methylprednisolone 1 mg/kg IV, admit.\n")
COLITIS_G2 = ("Oncology clinic. Cycle 4 of nivolumab.\n"
              "Assessment: grade 2 immune-mediated colitis, 5 loose stools a day.\n"
              "Plan: start prednisone 1 mg/kg, hold nivolumab.\n")
QUIET = "Routine follow-up. Tolerating treatment well. Vitals stable. Return in three weeks.\n"


def doc_ref(patient_id: str, text: str) -> dict:
    return {"resourceType": "DocumentReference", "status": "current", "date": "2026-03-02T10:15:00Z",
            "type": {"coding": [{"system": "http://loinc.org", "code": "11506-3", "display": "Progress note"}]},
            "subject": {"reference": f"Patient/{patient_id}"},
            "content": [{"attachment": {"contentType": "text/plain; charset=utf-8",
                                        "data": base64.b64encode(text.encode()).decode()}}]}


async def patient_with_oncologist(client) -> tuple[str, str]:
    patient = (await client.create({"resourceType": "Patient", "name": [{"family": "Testpatient"}]})).id
    oncologist = (await client.create({"resourceType": "Practitioner", "name": [{"family": "Onco"}]})).id
    await client.create({"resourceType": "CareTeam", "status": "active", "subject": {"reference": f"Patient/{patient}"},
                         "participant": [{"role": [{"coding": [{"system": "http://snomed.info/sct", "code": "309295000",
                                                                "display": "Oncologist"}]}],
                                          "member": {"reference": f"Practitioner/{oncologist}"}}]})
    return patient, f"Practitioner/{oncologist}"


def changed(tenant: str, resource_type: str, rid: str, version: str, patient: str | None,
            action: str = "create") -> Event:
    return Event.new("vigil.ehr.resource-changed", source=f"/test/{tenant}", tenant=tenant, key=patient,
                     id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{tenant}/{resource_type}/{rid}/{version}")),
                     data={"resourceType": resource_type, "id": rid, "versionId": version, "patient": patient,
                           "action": action, "origin": "subscription", "lastUpdated": "2026-03-02T10:16:00Z"})


def findings(tenant: str, patient: str, document: str, version: str, items: list[dict], *,
             review: bool = False, n: int = 0) -> Event:
    """A findings event as extraction would emit it (for triage tests that skip extraction)."""
    return Event.new("vigil.extraction.findings", source=f"/test/{tenant}", tenant=tenant, key=patient,
                     id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{tenant}/findings/{document}/{version}/{n}")),
                     data={"document": {"id": document, "versionId": version}, "patient": patient,
                           "engine": "rules", "engineVersion": "rules-test-1", "promptHash": None,
                           "noteTime": "2026-03-02T10:15:00Z", "reviewRequired": review,
                           "noteSha256": "0" * 64, "findings": items})


def finding(category: str, grade: int | None, quote: str = "evidence quote", start: int = 10,
            confidence: float = 0.9) -> dict:
    return {"category": category, "grade": grade, "start": start, "end": start + len(quote), "quote": quote,
            "attribution": "immunotherapy", "confidence": confidence}
