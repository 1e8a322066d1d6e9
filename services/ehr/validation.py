"""Validation of incoming resources: JSON whose numbers fit their types, R4B structure
(fhir.resources), the coded values with required bindings that the library does not check, and
the narrative rules."""
from __future__ import annotations

import json
import math
import re
from functools import lru_cache
from pathlib import Path

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from services.ehr import narrative
from services.ehr.outcome import FhirError, bad_request, issue, unprocessable

ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
MAX_ISSUES = 20
#: The longest number accepted in a JSON body: FHIR integer64 has 19 digits, and a decimal with
#: more than 32 significant digits is beyond what any clinical quantity carries.
MAX_NUMBER_CHARS = 40

#: (resource type, element) -> allowed codes (required bindings, FHIR R4).
REQUIRED_CODES: dict[tuple[str, str], frozenset[str]] = {
    ("Task", "status"): frozenset("draft requested received accepted rejected ready cancelled in-progress on-hold "
                                  "failed completed entered-in-error".split()),
    ("Task", "intent"): frozenset("unknown proposal plan order original-order reflex-order filler-order "
                                  "instance-order option".split()),
    ("Task", "priority"): frozenset("routine urgent asap stat".split()),
    ("Appointment", "status"): frozenset("proposed pending booked arrived fulfilled cancelled noshow "
                                         "entered-in-error checked-in waitlist".split()),
    ("Slot", "status"): frozenset("busy free busy-unavailable busy-tentative entered-in-error".split()),
    ("Observation", "status"): frozenset("registered preliminary final amended corrected cancelled "
                                         "entered-in-error unknown".split()),
    ("DetectedIssue", "status"): frozenset("registered preliminary final amended corrected cancelled "
                                           "entered-in-error unknown".split()),
    ("DetectedIssue", "severity"): frozenset("high moderate low".split()),
    ("DocumentReference", "status"): frozenset("current superseded entered-in-error".split()),
    ("DocumentReference", "docStatus"): frozenset("preliminary final amended entered-in-error".split()),
    ("MedicationRequest", "status"): frozenset("active on-hold cancelled completed entered-in-error stopped draft "
                                               "unknown".split()),
    ("MedicationRequest", "intent"): frozenset("proposal plan order original-order reflex-order filler-order "
                                               "instance-order option".split()),
    ("Patient", "gender"): frozenset("male female other unknown".split()),
    ("Practitioner", "gender"): frozenset("male female other unknown".split()),
    ("Encounter", "status"): frozenset("planned arrived triaged in-progress onleave finished cancelled "
                                       "entered-in-error unknown".split()),
    ("CareTeam", "status"): frozenset("proposed active suspended inactive entered-in-error".split()),
    ("Communication", "status"): frozenset("preparation in-progress not-done on-hold stopped completed "
                                           "entered-in-error unknown".split()),
    ("AuditEvent", "action"): frozenset("C R U D E".split()),
    ("AuditEvent", "outcome"): frozenset("0 4 8 12".split()),
    ("Device", "status"): frozenset("active inactive entered-in-error unknown".split()),
    ("Subscription", "status"): frozenset("requested active error off".split()),
    ("Bundle", "type"): frozenset("document message transaction transaction-response batch batch-response "
                                  "history searchset collection".split()),
}


_RESOURCE_CLASS = re.compile(r"^class (\w+)\((?:domainresource\.DomainResource|resource\.Resource)\):", re.M)


@lru_cache(maxsize=1)
def resource_types() -> frozenset[str]:
    """Every concrete R4B resource type (what the server accepts), read from the model sources:
    importing all 140 model modules to ask them would take seconds at start-up."""
    import fhir.resources.R4B as r4b

    names: set[str] = set()
    for path in Path(r4b.__file__).parent.glob("*.py"):
        names.update(_RESOURCE_CLASS.findall(path.read_text(encoding="utf-8")))
    return frozenset(names - {"DomainResource", "Resource"})


def check_type(resource_type: str) -> str:
    if resource_type not in resource_types():
        raise FhirError(404, f"Resource type '{resource_type[:64]}' is not supported by this server", "not-supported")
    return resource_type


def check_id(resource_id: str) -> str:
    if not ID_RE.match(resource_id or ""):
        raise bad_request(f"'{resource_id[:80]}' is not a valid FHIR id (1-64 of A-Z a-z 0-9 - .)")
    return resource_id


def _json_int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise bad_request(f"A number in the body has more than {MAX_NUMBER_CHARS} characters", "structure")
    return int(text)


def _json_float(text: str) -> float:
    value = float(text) if len(text) <= MAX_NUMBER_CHARS else math.inf
    if not math.isfinite(value):
        raise bad_request("A number in the body is too large (or has more than "
                          f"{MAX_NUMBER_CHARS} characters)", "structure")
    return value


def _json_constant(name: str) -> None:
    raise bad_request(f"{name} is not valid JSON (JSON numbers are finite)", "structure")


def parse_json(raw: bytes) -> object:
    """JSON with numbers that fit: no NaN or Infinity, no number longer than MAX_NUMBER_CHARS."""
    if not raw:
        raise bad_request("The request body is empty; a FHIR JSON resource was expected", "required")
    try:
        return json.loads(raw, parse_int=_json_int, parse_float=_json_float, parse_constant=_json_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise bad_request(f"The request body is not valid JSON: {type(exc).__name__}: {str(exc)[:200]}",
                          "structure") from None


def _location(loc: tuple) -> str:
    return ".".join(str(p) for p in loc if p != "__root__") or "(resource)"


def validate(resource: object, expected_type: str | None = None) -> dict:
    """Check a parsed resource; returns it unchanged (as sent) or raises a 400/422 FhirError."""
    if not isinstance(resource, dict):
        raise bad_request("A FHIR resource must be a JSON object", "structure")
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str):
        raise bad_request("The resource has no resourceType", "required")
    if rtype not in resource_types():
        raise bad_request(f"Unknown resource type '{rtype[:64]}'", "not-supported")
    if expected_type and rtype != expected_type:
        raise bad_request(f"resourceType '{rtype}' does not match the URL's type '{expected_type}'")
    if "id" in resource and (not isinstance(resource["id"], str) or not ID_RE.match(resource["id"])):
        raise bad_request("Resource.id is not a valid FHIR id")
    try:
        get_fhir_model_class(rtype).model_validate(resource)
    except ValidationError as exc:
        issues = [issue("invalid" if e["type"] != "missing" else "required",
                        f"{_location(e['loc'])}: {e['msg']}", expression=f"{rtype}.{_location(e['loc'])}")
                  for e in exc.errors()[:MAX_ISSUES]]
        raise unprocessable(f"{rtype} failed validation", issues) from None
    except (ValueError, TypeError, RecursionError) as exc:
        raise unprocessable(f"{rtype} failed validation: {type(exc).__name__}") from None
    _check_codes(rtype, resource)
    narrative_problems = narrative.walk(resource, rtype)
    if narrative_problems:
        raise unprocessable(f"{rtype} has a narrative that breaks FHIR's narrative rules", narrative_problems)
    return resource


def _check_codes(rtype: str, resource: dict) -> None:
    problems = []
    for (typ, element), allowed in REQUIRED_CODES.items():
        if typ != rtype or element not in resource:
            continue
        value = resource[element]
        if value not in allowed:
            shown = value if isinstance(value, str) else type(value).__name__
            problems.append(issue("code-invalid", f"{rtype}.{element}: '{str(shown)[:64]}' is not in the required "
                                  f"value set ({', '.join(sorted(allowed))})", expression=f"{rtype}.{element}"))
    if problems:
        raise unprocessable(f"{rtype} has codes outside required value sets", problems)
