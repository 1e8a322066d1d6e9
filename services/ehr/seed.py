"""Seed data for a tenant EHR: the Synthea sample patient and a synthetic oncology panel
(patients on immune checkpoint inhibitors, oncologists, care teams, schedules with free slots
over the next two weeks, and a stream of clinical notes as DocumentReference).

Everything is written through the FHIR API (transactions), with identifiers and ifNoneExist,
so seeding twice does not duplicate. All people here are synthetic.
"""
from __future__ import annotations

import base64
import json
from datetime import datetime, time, timedelta, timezone
from pathlib import Path

from services.core.fhir import FhirClient

SYNTHEA_BUNDLE = Path(__file__).resolve().parents[3] / "shared" / "data" / "synthea" / "sample_complete_patient.json"
SYNTHEA_ID_SYSTEM = "https://github.com/synthetichealth/synthea"
NPI = "http://hl7.org/fhir/sid/us-npi"
MRN = "https://vigil.health/fhir/sid/mrn"
LOCAL = "https://vigil.health/fhir/sid/sandbox"
ROLE_SYSTEM = "https://vigil.health/fhir/CodeSystem/care-team-role"
SLOT_MINUTES = 30
SLOT_HOURS = (9, 10, 11, 14, 15)  # clinic hours, UTC
SLOT_DAYS = 14

PRACTITIONERS = [  # (key, family, given, npi, specialty)
    ("onc-1", "Okafor", "Adaeze", "1000000001", "oncology"),
    ("onc-2", "Lindqvist", "Erik", "1000000002", "oncology"),
    ("onc-3", "Ramanathan", "Priya", "1000000003", "oncology"),
    ("rn-1", "Moreau", "Claire", "1000000011", "nursing"),
    ("pcp-1", "Haddad", "Samir", "1000000021", "primary-care"),
]
ICIS = {  # RxNorm ingredient codes
    "pembrolizumab": "1547545", "nivolumab": "1597876", "ipilimumab": "1094833",
    "atezolizumab": "1792776", "durvalumab": "1919503",
}
CANCERS = {"C43.9": "Malignant melanoma of skin, unspecified",
           "C34.90": "Malignant neoplasm of unspecified part of unspecified bronchus or lung",
           "C64.9": "Malignant neoplasm of unspecified kidney, except renal pelvis",
           "C67.9": "Malignant neoplasm of bladder, unspecified"}
PATIENTS = [  # (mrn, family, given, gender, birthDate, cancer, drugs, oncologist)
    ("ONC-0001", "Castellano", "Marisol", "female", "1961-04-12", "C43.9", ["nivolumab", "ipilimumab"], "onc-1"),
    ("ONC-0002", "Whitfield", "George", "male", "1954-09-30", "C34.90", ["pembrolizumab"], "onc-2"),
    ("ONC-0003", "Nakamura", "Hiroshi", "male", "1968-01-22", "C64.9", ["nivolumab"], "onc-3"),
    ("ONC-0004", "Adeyemi", "Folake", "female", "1972-07-08", "C34.90", ["durvalumab"], "onc-2"),
    ("ONC-0005", "Kowalski", "Anna", "female", "1958-11-17", "C67.9", ["atezolizumab"], "onc-1"),
    ("ONC-0006", "Brennan", "Thomas", "male", "1949-03-03", "C43.9", ["pembrolizumab"], "onc-3"),
]
NOTE_TEMPLATES = [
    "Oncology follow-up. On {drug} cycle 4. Reports 6-7 watery stools per day over baseline for 3 days, "
    "mild cramping, no blood. Afebrile. Plan: stool studies, start loperamide, hold next dose pending review.",
    "Telephone note. Patient on {drug} describes a new itchy maculopapular rash on trunk and arms, roughly 20% "
    "body surface area. No mucosal involvement. Topical steroid prescribed; photo review tomorrow.",
    "Lab review. TSH 14.2 mIU/L (ref 0.4-4.0), free T4 low at 0.6 ng/dL. Fatigue and cold intolerance since "
    "starting {drug}. Consistent with immune-related hypothyroidism; start levothyroxine.",
    "Clinic visit. New dry cough and exertional dyspnea for one week while on {drug}. SpO2 93% on room air. "
    "CT chest ordered to assess for pneumonitis. Holding immunotherapy.",
    "Infusion visit. Tolerating {drug} well. No diarrhea, rash, cough or fatigue reported. ECOG 0. "
    "Proceed with cycle as planned.",
    "Lab review. ALT 210 U/L and AST 185 U/L (about 5x upper limit of normal) on {drug}. Bilirubin normal. "
    "Asymptomatic. Hold treatment, repeat LFTs in 3 days, consider prednisone.",
]


def _ident(system: str, value: str) -> list[dict]:
    return [{"system": system, "value": value}]


def _post(full_url: str, resource: dict, if_none_exist: str | None = None) -> dict:
    request = {"method": "POST", "url": resource["resourceType"]}
    if if_none_exist:
        request["ifNoneExist"] = if_none_exist
    return {"fullUrl": full_url, "resource": resource, "request": request}


def note_resource(patient_ref: str, author_ref: str, text: str, when: datetime, identifier: str) -> dict:
    return {
        "resourceType": "DocumentReference", "status": "current", "docStatus": "final",
        "identifier": _ident(LOCAL, identifier),
        "type": {"coding": [{"system": "http://loinc.org", "code": "11506-3", "display": "Progress note"}]},
        "category": [{"coding": [{"system": "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category",
                                  "code": "clinical-note", "display": "Clinical Note"}]}],
        "subject": {"reference": patient_ref}, "author": [{"reference": author_ref}],
        "date": when.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "content": [{"attachment": {"contentType": "text/plain; charset=utf-8", "language": "en-US",
                                    "data": base64.b64encode(text.encode()).decode(),
                                    "title": "Progress note", "creation": when.isoformat(timespec="seconds")}}],
    }


def oncology_bundle(now: datetime | None = None, notes: int = 6) -> dict:
    """One transaction with the whole panel; idempotent through ifNoneExist on identifiers."""
    now = (now or datetime.now(timezone.utc)).replace(microsecond=0)
    entries: list[dict] = []
    prac_url = {}
    for key, family, given, npi, specialty in PRACTITIONERS:
        prac_url[key] = f"urn:uuid:prac-{key}"
        entries.append(_post(prac_url[key], {
            "resourceType": "Practitioner", "active": True, "identifier": _ident(NPI, npi),
            "name": [{"family": family, "given": [given], "prefix": ["Dr."] if specialty != "nursing" else []}],
            "qualification": [{"code": {"text": specialty}}]}, f"identifier={NPI}|{npi}"))
        if specialty == "oncology":
            entries.append(_post(f"urn:uuid:role-{key}", {
                "resourceType": "PractitionerRole", "active": True, "identifier": _ident(LOCAL, f"role-{key}"),
                "practitioner": {"reference": prac_url[key]},
                "specialty": [{"coding": [{"system": "http://snomed.info/sct", "code": "394593009",
                                           "display": "Medical oncology"}]}]}, f"identifier={LOCAL}|role-{key}"))
            sched_url = f"urn:uuid:sched-{key}"
            entries.append(_post(sched_url, {
                "resourceType": "Schedule", "active": True, "identifier": _ident(LOCAL, f"sched-{key}"),
                "actor": [{"reference": prac_url[key]}],
                "serviceType": [{"text": "Oncology follow-up"}]}, f"identifier={LOCAL}|sched-{key}"))
            for day in range(1, SLOT_DAYS + 1):
                date = (now + timedelta(days=day)).date()
                if date.weekday() >= 5:
                    continue
                for hour in SLOT_HOURS:
                    start = datetime.combine(date, time(hour, 0), tzinfo=timezone.utc)
                    stamp = start.strftime("%Y%m%dT%H%M")
                    entries.append(_post(f"urn:uuid:slot-{key}-{stamp}", {
                        "resourceType": "Slot", "identifier": _ident(LOCAL, f"slot-{key}-{stamp}"),
                        "schedule": {"reference": sched_url}, "status": "free",
                        "serviceType": [{"text": "Oncology follow-up"}],
                        "start": start.isoformat().replace("+00:00", "Z"),
                        "end": (start + timedelta(minutes=SLOT_MINUTES)).isoformat().replace("+00:00", "Z")},
                        f"identifier={LOCAL}|slot-{key}-{stamp}"))
    note_count = 0
    for index, (mrn, family, given, gender, birth, cancer, drugs, onc) in enumerate(PATIENTS):
        pat_url = f"urn:uuid:pat-{mrn}"
        entries.append(_post(pat_url, {
            "resourceType": "Patient", "active": True, "identifier": _ident(MRN, mrn),
            "name": [{"family": family, "given": [given]}], "gender": gender, "birthDate": birth},
            f"identifier={MRN}|{mrn}"))
        entries.append(_post(f"urn:uuid:cond-{mrn}", {
            "resourceType": "Condition", "identifier": _ident(LOCAL, f"cond-{mrn}"),
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                           "code": "active"}]},
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": cancer,
                                 "display": CANCERS[cancer]}]},
            "subject": {"reference": pat_url}}, f"identifier={LOCAL}|cond-{mrn}"))
        for drug in drugs:
            entries.append(_post(f"urn:uuid:mr-{mrn}-{drug}", {
                "resourceType": "MedicationRequest", "identifier": _ident(LOCAL, f"mr-{mrn}-{drug}"),
                "status": "active", "intent": "order",
                "category": [{"text": "immunotherapy"}],
                "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                          "code": ICIS[drug], "display": drug}], "text": drug},
                "subject": {"reference": pat_url}, "requester": {"reference": prac_url[onc]},
                "authoredOn": (now - timedelta(days=60 + index)).date().isoformat()},
                f"identifier={LOCAL}|mr-{mrn}-{drug}"))
        entries.append(_post(f"urn:uuid:ct-{mrn}", {
            "resourceType": "CareTeam", "status": "active", "identifier": _ident(LOCAL, f"ct-{mrn}"),
            "name": "Oncology care team", "subject": {"reference": pat_url},
            "participant": [
                {"role": [{"coding": [{"system": ROLE_SYSTEM, "code": "oncologist", "display": "Treating oncologist"},
                                      {"system": "http://snomed.info/sct", "code": "394593009",
                                       "display": "Medical oncology"}]}],
                 "member": {"reference": prac_url[onc]}},
                {"role": [{"coding": [{"system": ROLE_SYSTEM, "code": "nurse", "display": "Oncology nurse"}]}],
                 "member": {"reference": prac_url["rn-1"]}}]}, f"identifier={LOCAL}|ct-{mrn}"))
        if note_count < notes:
            template = NOTE_TEMPLATES[index % len(NOTE_TEMPLATES)]
            when = now - timedelta(hours=notes - note_count)
            entries.append(_post(f"urn:uuid:note-{mrn}", note_resource(
                pat_url, prac_url[onc], template.format(drug=drugs[0]), when, f"note-{mrn}"),
                f"identifier={LOCAL}|note-{mrn}"))
            note_count += 1
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


async def load_synthea(client: FhirClient, path: Path = SYNTHEA_BUNDLE) -> dict:
    """Load the Synthea sample as-is (a transaction), unless its patient is already there."""
    bundle = json.loads(path.read_text(encoding="utf-8"))
    patient = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    synthea_id = next(i["value"] for i in patient.get("identifier", []) if i.get("system") == SYNTHEA_ID_SYSTEM)
    existing = await client.search("Patient", {"identifier": f"{SYNTHEA_ID_SYSTEM}|{synthea_id}"})
    if existing:
        return {"loaded": False, "patient": existing[0]["id"]}
    response = await client.transaction(bundle)
    location = response["entry"][0]["response"]["location"]
    return {"loaded": True, "entries": len(response["entry"]), "patient": location.split("/")[1]}


async def seed_tenant(client: FhirClient, *, synthea: bool = True, oncology: bool = True, notes: int = 6) -> dict:
    summary: dict = {}
    if synthea:
        summary["synthea"] = await load_synthea(client)
    if oncology:
        bundle = oncology_bundle(notes=notes)
        response = await client.transaction(bundle)
        ids: dict[str, list[str]] = {}
        for entry, result in zip(bundle["entry"], response["entry"]):
            rtype, rid = result["response"]["location"].split("/")[:2]
            ids.setdefault(rtype, []).append(rid)
        oncologists = [ids["Practitioner"][i] for i, p in enumerate(PRACTITIONERS) if p[4] == "oncology"]
        summary["oncology"] = {"patients": ids.get("Patient", []), "oncologists": oncologists,
                               "practitioners": ids.get("Practitioner", []), "schedules": ids.get("Schedule", []),
                               "slots": len(ids.get("Slot", [])), "notes": ids.get("DocumentReference", []),
                               "care_teams": ids.get("CareTeam", [])}
    return summary


async def add_note(client: FhirClient, patient_id: str, author_id: str, text: str,
                   identifier: str | None = None, when: datetime | None = None) -> dict:
    """Write one more clinical note (the "stream"); returns the stored DocumentReference."""
    import uuid

    when = when or datetime.now(timezone.utc).replace(microsecond=0)
    resource = note_resource(f"Patient/{patient_id}", f"Practitioner/{author_id}", text, when,
                             identifier or f"note-{uuid.uuid4().hex}")
    result = await client.create(resource, if_none_exist=f"identifier={LOCAL}|{resource['identifier'][0]['value']}")
    return result.resource
