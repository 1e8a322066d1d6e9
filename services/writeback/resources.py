"""The FHIR resources writeback writes for one triage decision, as ONE transaction Bundle.

A new finding (no open Task for its episode) becomes::

    Device        conditional create (ifNoneExist identifier = engine version): the AI system
    Task          conditional create (ifNoneExist identifier = decision id): the inbox item
    Observation   conditional create (ifNoneExist identifier = decision id) - routine / review
    DetectedIssue (instead of the Observation) - urgent findings
    Provenance    target = Task/.../_history/1 and the evidence resource; agent = the Device;
                  entity = the source note (versioned), role derivation
    AuditEvent    what was written, by which Device, for which decision

A later decision about the same episode updates the open Task (PUT with ifMatch) instead:
the new evidence is added to ``Task.input``, the decision id to ``Task.identifier``, priority
and grade only go up; its own Observation/DetectedIssue, Provenance (target the Task's next
version) and AuditEvent are created in the same transaction.

How the evidence is represented: exactly the contract in the inbox module docstring
(``services/ehr/inbox/__init__.py``), so the clinician inbox renders what we write:

- ``Task.input`` entries coded in ``INPUT_SYSTEM`` (``type.text`` repeats the code):
  ``source-note`` (valueReference, the versioned DocumentReference; newest first), ``finding``
  (valueCodeableConcept in ``CATEGORY_SYSTEM``), ``grade`` (valueInteger, one entry, the highest
  of the episode), ``evidence-start`` / ``evidence-end`` / ``evidence-quote`` (the n-th of each form
  the n-th span; newest first; offsets are code points of the note text, end exclusive),
  ``model-version`` (valueString) and ``decision-id`` (valueString, every decision applied).
- ``Task.focus`` is the newest Observation / DetectedIssue; the Observation repeats the span as
  components (``code.text`` evidence-quote / evidence-start / evidence-end / grade); the
  DetectedIssue has the quote in ``detail`` and the offsets in extensions ``EXT_START`` / ``EXT_END``.
- The Provenance targets ``Task/<id>/_history/<v>`` (the version this transaction makes) and the
  evidence resource; its agent is the Device whose ``version`` is the model / rule-set version.
- ``meta.security`` AIAST (``v3-ObservationValue``) on the Task, Observation, DetectedIssue and
  Provenance; ``meta.tag`` ``https://vigil.health/fhir/tag|vigil`` on every Vigil resource (the
  Task subscription filters on it).
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Callable

from services.core.events import deterministic_id
from services.core.vigiltasks import DECISION_SYSTEM, INPUT_SYSTEM, input_code as _input_code, \
    input_values as task_inputs

AIAST = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "AIAST",
         "display": "Artificial Intelligence asserted"}
VIGIL_TAG = {"system": "https://vigil.health/fhir/tag", "code": "vigil"}
EPISODE_SYSTEM = "https://vigil.health/fhir/sid/episode"
DEVICE_SYSTEM = "https://vigil.health/fhir/sid/ai-device"
BUSINESS_SYSTEM = "https://vigil.health/fhir/CodeSystem/task-business-status"
CATEGORY_SYSTEM = "http://vigil.example/fhir/CodeSystem/irae-category"
DEVICE_TYPE = {"system": "https://vigil.health/fhir/CodeSystem/device-type", "code": "artificial-intelligence",
               "display": "Artificial intelligence"}
EXT_START = "https://vigil.health/fhir/StructureDefinition/evidence-start"
EXT_END = "https://vigil.health/fhir/StructureDefinition/evidence-end"
TASK_CODE = {"system": "https://vigil.health/fhir/CodeSystem/task-code", "code": "review-irae-finding",
             "display": "Review a possible immune-related adverse event"}
PROVENANCE_AGENT_TYPE = {"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                         "code": "assembler", "display": "Assembler"}
DERIVATION = {"system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation", "code": "CREATE"}
AUDIT_TYPE = {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest",
              "display": "RESTful Operation"}
AUDIT_SUBTYPE = {"system": "http://hl7.org/fhir/restful-interaction", "code": "transaction",
                 "display": "transaction"}

PRIORITY = {"urgent-task": "urgent", "routine-task": "routine", "review-task": "routine"}
PRIORITY_RANK = {"routine": 0, "urgent": 1, "asap": 2, "stat": 3}
#: Days the clinician has to act: urgent findings by tomorrow, routine ones within a week.
DUE_DAYS = {"urgent-task": 1, "routine-task": 7, "review-task": 7}
WRITABLE_KINDS = tuple(PRIORITY)
OPEN_STATUSES = ("draft", "requested", "received", "accepted", "ready", "in-progress", "on-hold")
INPUT_NAMES = ("source-note", "finding", "grade", "evidence-start", "evidence-end", "evidence-quote",
               "model-version", "decision-id")


def _iso(when: datetime) -> str:
    return when.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _urn(*parts) -> str:
    return f"urn:uuid:{deterministic_id('writeback', *parts)}"


def _meta(ai: bool) -> dict:
    meta: dict = {"tag": [dict(VIGIL_TAG)]}
    if ai:
        meta["security"] = [dict(AIAST)]
    return meta


def device_key(engine_version: str) -> str:
    return deterministic_id("device", engine_version)


def document_ref(decision: dict) -> str:
    doc = decision["document"]
    ref = f"DocumentReference/{doc['id']}"
    return f"{ref}/_history/{doc['versionId']}" if doc.get("versionId") else ref


def note_reference(decision: dict) -> dict:
    """The note as a FHIR Reference: a literal one to the EHR's DocumentReference version, or, for a
    note the EHR has no FHIR id for (an HL7 note in Vigil's document store), a logical one by its
    source identifier (TXA-12 / MSH-10), which the EHR resolves or shows as it is."""
    doc = decision["document"]
    if doc.get("source") == "store":
        identifier = doc.get("identifier") or {"system": "urn:vigil:document-store", "value": doc["id"]}
        return {"type": "DocumentReference", "identifier": dict(identifier), "display": "clinical note (HL7 feed)"}
    return {"reference": document_ref(decision)}


def _input(name: str, **value) -> dict:
    return {"type": {"coding": [{"system": INPUT_SYSTEM, "code": name}], "text": name}, **value}


def _category(decision: dict) -> str:
    return decision["finding"].get("category") or decision["category"]


def _grade(decision: dict) -> int | None:
    """The decision's (triage-normalized) CTCAE grade, else the finding's own."""
    g = decision.get("grade")
    return g if g is not None else decision["finding"].get("grade")


def span_inputs(decision: dict) -> list[dict]:
    f = decision["finding"]
    return [_input("evidence-start", valueInteger=int(f["start"])), _input("evidence-end", valueInteger=int(f["end"])),
            _input("evidence-quote", valueString=f["quote"])]


def task_input(decision: dict, *, notes: list[dict] = (), spans: list[dict] = (), grade: int | None = None,
               decision_ids: list[str] = ()) -> list[dict]:
    """Task.input in the inbox's order: newest note and spans first, one finding, one (highest) grade."""
    category = _category(decision)
    note = note_reference(decision)
    out = [_input("source-note", valueReference=note)]
    out += [_input("source-note", valueReference=n) for n in notes if n != note]
    out.append(_input("finding", valueCodeableConcept={"coding": [{"system": CATEGORY_SYSTEM, "code": category}],
                                                       "text": category}))
    if grade is not None:
        out.append(_input("grade", valueInteger=int(grade)))
    out += span_inputs(decision) + list(spans)
    out.append(_input("model-version", valueString=decision["engineVersion"]))
    out += [_input("decision-id", valueString=i) for i in [decision["decisionId"], *decision_ids]]
    return out


def task_description(category: str, grade: int | None) -> str:
    label = category.replace("-", " ").replace("_", " ")
    return f"Possible immune-related adverse event: {label}" + (f", CTCAE grade {grade}" if grade else "") + \
        " (AI-generated; review the evidence)"


def device(engine_version: str) -> dict:
    return {"resourceType": "Device", "meta": _meta(False), "status": "active",
            "identifier": [{"system": DEVICE_SYSTEM, "value": device_key(engine_version)}],
            "deviceName": [{"name": "Vigil irAE extraction", "type": "model-name"}],
            "type": {"coding": [dict(DEVICE_TYPE)], "text": "Artificial intelligence"},
            "version": [{"value": engine_version}]}


def evidence_resource(decision: dict, patient_ref: str, now: datetime) -> dict:
    """Observation (routine / review) or DetectedIssue (urgent) holding the evidence."""
    f = decision["finding"]
    grade = _grade(decision)
    category = _category(decision)
    ident = [{"system": DECISION_SYSTEM, "value": decision["decisionId"]}]
    concept = {"coding": [{"system": CATEGORY_SYSTEM, "code": category}], "text": category}
    if decision["kind"] == "urgent-task":
        return {"resourceType": "DetectedIssue", "meta": _meta(True), "identifier": ident, "status": "preliminary",
                "code": concept, "severity": "high", "patient": {"reference": patient_ref},
                "identifiedDateTime": _iso(now), "detail": f["quote"],
                "extension": [{"url": EXT_START, "valueInteger": int(f["start"])},
                              {"url": EXT_END, "valueInteger": int(f["end"])}],
                "evidence": [{"detail": [note_reference(decision)]}]}
    components = [{"code": {"text": "evidence-quote"}, "valueString": f["quote"]},
                  {"code": {"text": "evidence-start"}, "valueInteger": int(f["start"])},
                  {"code": {"text": "evidence-end"}, "valueInteger": int(f["end"])}]
    if grade is not None:
        components.append({"code": {"text": "grade"}, "valueInteger": int(grade)})
    return {"resourceType": "Observation", "meta": _meta(True), "identifier": ident, "status": "preliminary",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                      "code": "exam"}]}],
            "code": concept, "subject": {"reference": patient_ref}, "effectiveDateTime": _iso(now),
            "valueCodeableConcept": concept, "derivedFrom": [note_reference(decision)],
            "component": components}


def new_task(decision: dict, patient_ref: str, evidence_ref: str, now: datetime) -> dict:
    kind = decision["kind"]
    task = {"resourceType": "Task", "meta": _meta(True),
            "identifier": [{"system": DECISION_SYSTEM, "value": decision["decisionId"]},
                           {"system": EPISODE_SYSTEM, "value": decision["episodeKey"]}],
            "status": "requested", "intent": "proposal", "priority": PRIORITY[kind],
            "businessStatus": {"coding": [{"system": BUSINESS_SYSTEM, "code": "new-finding"}],
                               "text": "New AI finding"},
            "code": {"coding": [dict(TASK_CODE)]},
            "description": task_description(decision["category"], decision.get("grade")),
            "for": {"reference": patient_ref}, "focus": {"reference": evidence_ref},
            "authoredOn": _iso(now), "lastModified": _iso(now),
            "restriction": {"period": {"start": _iso(now), "end": _iso(now + timedelta(days=DUE_DAYS[kind]))}},
            "input": task_input(decision, grade=_grade(decision))}
    if decision.get("owner"):
        task["owner"] = {"reference": decision["owner"]}
    return task


def updated_task(current: dict, decision: dict, evidence_ref: str, now: datetime) -> dict:
    """The open episode Task with this decision's evidence added; priority and grade never go down."""
    task = {k: v for k, v in current.items() if k != "meta"}
    task["meta"] = {"tag": [dict(VIGIL_TAG)], "security": [dict(AIAST)]}
    task["identifier"] = [*current.get("identifier", []), {"system": DECISION_SYSTEM, "value": decision["decisionId"]}]
    wanted = PRIORITY[decision["kind"]]
    if PRIORITY_RANK.get(wanted, 0) > PRIORITY_RANK.get(current.get("priority", "routine"), 0):
        task["priority"] = wanted
        days = DUE_DAYS[decision["kind"]]
        task["restriction"] = {"period": {"start": _iso(now), "end": _iso(now + timedelta(days=days))}}
    grades = [g for g in (task_grade(current), _grade(decision)) if g is not None]
    grade = max(grades) if grades else None
    task["description"] = task_description(decision["category"], grade)
    spans = [i for i in current.get("input", []) if _input_code(i) in ("evidence-start", "evidence-end",
                                                                          "evidence-quote")]
    task["input"] = task_input(decision, notes=[n for n in task_inputs(current, "source-note") if isinstance(n, dict)],
                               spans=spans, grade=grade, decision_ids=[i for i in task_inputs(current, "decision-id")
                                                                       if isinstance(i, str)])
    task["focus"] = {"reference": evidence_ref}
    task["businessStatus"] = {"coding": [{"system": BUSINESS_SYSTEM, "code": "updated-finding"}],
                              "text": "AI finding updated with new evidence"}
    task["lastModified"] = _iso(now)
    return task


def task_grade(task: dict) -> int | None:
    grades = [g for g in task_inputs(task, "grade") if isinstance(g, int)]
    return max(grades) if grades else None


def has_identifier(resource: dict, system: str, value: str) -> bool:
    return any(i.get("system") == system and i.get("value") == value for i in resource.get("identifier", []))


def _provenance(decision: dict, target: str, evidence: str, device_ref: str, now: datetime) -> dict:
    return {"resourceType": "Provenance", "meta": _meta(True), "target": [{"reference": target},
                                                                         {"reference": evidence}],
            "recorded": _iso(now), "activity": {"coding": [dict(DERIVATION)]},
            "agent": [{"type": {"coding": [dict(PROVENANCE_AGENT_TYPE)]}, "who": {"reference": device_ref}}],
            "entity": [{"role": "derivation", "what": note_reference(decision)}]}


def _audit(decision: dict, refs: list[str], device_ref: str, patient_ref: str, action: str, now: datetime) -> dict:
    return {"resourceType": "AuditEvent", "meta": _meta(False), "type": dict(AUDIT_TYPE),
            "subtype": [dict(AUDIT_SUBTYPE)], "action": action, "recorded": _iso(now), "outcome": "0",
            "outcomeDesc": f"Vigil writeback of decision {decision['decisionId']}",
            "agent": [{"who": {"reference": device_ref}, "requestor": False,
                       "type": {"coding": [{"system": "http://dicom.nema.org/resources/ontology/DCM",
                                            "code": "110150", "display": "Application"}]}}],
            "source": {"observer": {"display": "vigil-writeback"},
                       "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                                 "code": "4", "display": "Application Server"}]},
            "entity": [{"what": {"reference": r}} for r in refs] + [{"what": {"reference": patient_ref}}]}


def _post(full_url: str, resource: dict, if_none_exist: str | None = None) -> dict:
    request = {"method": "POST", "url": resource["resourceType"]}
    if if_none_exist:
        request["ifNoneExist"] = if_none_exist
    return {"fullUrl": full_url, "resource": resource, "request": request}


#: Who wrote it, when the EHR keeps no Device: a display-only Reference in Provenance / AuditEvent.
DEVICE_DISPLAY = "Vigil irAE extraction (AI system)"


def only_accepted(bundle: dict, accepts: Callable[[str], bool]) -> dict:
    """The transaction without the entries whose type the tenant's EHR does not accept
    (``IntegrationProfile.accepts``), and without references to them. What degrades:

    - no Observation / DetectedIssue: the evidence stays on the Task (its inputs carry quote,
      offsets, grade and source note); ``Task.focus`` is left out, Provenance targets the Task only;
    - no Device: Provenance and AuditEvent name the AI system by display text instead of a reference;
    - no Provenance: the Task's AIAST security label is the only AI-origin mark in the EHR (the
      decision ledger still records what was written and from which note);
    - no AuditEvent: the EHR has no audit entry of the write; Vigil's own ledger still has it.
    The Task is never left out: a profile that delivers ``fhir`` must accept it
    (``integration.FHIR_RESULT_REQUIRES``)."""
    dropped = {e["fullUrl"] for e in bundle["entry"]
               if e.get("fullUrl") and not accepts(e["resource"]["resourceType"])}
    if any(not accepts(e["resource"]["resourceType"]) and e["resource"]["resourceType"] == "Task"
           for e in bundle["entry"]):
        raise ValueError("a FHIR results channel needs Task writes")
    if not dropped:
        return bundle

    def gone(ref: dict | None) -> bool:
        return bool(ref) and ref.get("reference", "").split("/_history/")[0] in dropped

    entries = []
    for entry in bundle["entry"]:
        if entry.get("fullUrl") in dropped:
            continue
        resource = dict(entry["resource"])
        rtype = resource["resourceType"]
        if rtype == "Task" and gone(resource.get("focus")):
            resource.pop("focus")
        if rtype == "Provenance":
            resource["target"] = [t for t in resource["target"] if not gone(t)]
        if rtype == "AuditEvent":
            resource["entity"] = [e for e in resource["entity"] if not gone(e.get("what"))]
        if rtype in ("Provenance", "AuditEvent"):
            resource["agent"] = [{**a, "who": {"display": DEVICE_DISPLAY}} if gone(a.get("who")) else a
                                 for a in resource["agent"]]
        entries.append({**entry, "resource": resource})
    return {**bundle, "entry": entries}


def create_bundle(decision: dict, now: datetime | None = None) -> dict:
    """Transaction for a decision that opens a new Task."""
    now = now or datetime.now(timezone.utc)
    d = decision
    patient_ref = f"Patient/{d['patient']}"
    dev_url, task_url, ev_url = _urn("device", d["engineVersion"]), _urn("task", d["decisionId"]), \
        _urn("evidence", d["decisionId"])
    evidence = evidence_resource(d, patient_ref, now)
    task = new_task(d, patient_ref, ev_url, now)
    by_decision = f"identifier={DECISION_SYSTEM}|{d['decisionId']}"
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        _post(dev_url, device(d["engineVersion"]), f"identifier={DEVICE_SYSTEM}|{device_key(d['engineVersion'])}"),
        _post(ev_url, evidence, by_decision),
        _post(task_url, task, by_decision),
        _post(_urn("provenance", d["decisionId"]), _provenance(d, f"{task_url}/_history/1", ev_url, dev_url, now)),
        _post(_urn("audit", d["decisionId"]), _audit(d, [task_url, ev_url], dev_url, patient_ref, "C", now))]}


def update_bundle(decision: dict, current: dict, now: datetime | None = None) -> dict:
    """Transaction for a decision that updates the open episode Task ``current`` (If-Match its version)."""
    now = now or datetime.now(timezone.utc)
    d = decision
    patient_ref = f"Patient/{d['patient']}"
    version = int(current["meta"]["versionId"])
    dev_url, ev_url = _urn("device", d["engineVersion"]), _urn("evidence", d["decisionId"])
    task_ref = f"Task/{current['id']}"
    task = updated_task(current, d, ev_url, now)
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        _post(dev_url, device(d["engineVersion"]), f"identifier={DEVICE_SYSTEM}|{device_key(d['engineVersion'])}"),
        _post(ev_url, evidence_resource(d, patient_ref, now), f"identifier={DECISION_SYSTEM}|{d['decisionId']}"),
        {"resource": task, "request": {"method": "PUT", "url": task_ref, "ifMatch": f'W/"{version}"'}},
        _post(_urn("provenance", d["decisionId"]),
              _provenance(d, f"{task_ref}/_history/{version + 1}", ev_url, dev_url, now)),
        _post(_urn("audit", d["decisionId"]), _audit(d, [task_ref, ev_url], dev_url, patient_ref, "U", now))]}
