"""Which EHR family a tenant's sandbox plays: what its FHIR API offers and refuses.

- ``fhir-server`` (the default; HAPI FHIR, Smile CDR, Medplum): both subscription styles
  (Backport IG topics and classic R4 criteria rest-hooks), every search, every write.
- ``epic-like`` (Epic, and in these respects Oracle Health): no Subscription resource at all
  (a create or update of one, a Subscription search and the Subscription operations are 403 with
  an OperationOutcome of code ``not-supported``, and nothing is delivered for the tenant's
  existing ones); ``DocumentReference`` search needs ``patient`` or ``subject``
  (400 otherwise, as Epic's DocumentReference.Search does); writes of the types in
  :data:`EPIC_REFUSED_WRITES` (REST create/update/delete and transaction or batch entries) are
  403 with an OperationOutcome: Epic does not take Task, Observation, Provenance and the like
  from a third-party backend app, results reach the clinician through CDS Hooks or HL7v2.

Set per tenant through the admin API (``PUT /admin/tenants/<tenant>/family``) or
``vigil ehr family set``; kept in the ``family`` column of ``ehr_tenants``.
"""
from __future__ import annotations

from services.ehr.outcome import FhirError

FHIR_SERVER = "fhir-server"
EPIC_LIKE = "epic-like"
FAMILIES = (FHIR_SERVER, EPIC_LIKE)
DEFAULT = FHIR_SERVER
#: The types an epic-like EHR refuses to be written by Vigil (403).
EPIC_REFUSED_WRITES = ("Task", "Observation", "DetectedIssue", "Provenance", "Device", "AuditEvent")
#: Search parameters one of which an epic-like EHR requires on a DocumentReference search.
PATIENT_PARAMS = ("patient", "subject")

#: A schema module of its own (``ensure_schema(..., "ehr_families", STEPS)``).
STEPS = [
    "ALTER TABLE ehr_tenants ADD COLUMN IF NOT EXISTS family text NOT NULL DEFAULT 'fhir-server';\n",
]


def check_family(value: object) -> str:
    if value not in FAMILIES:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}")
    return value  # type: ignore[return-value]


def offers_subscriptions(family: str) -> bool:
    return family != EPIC_LIKE


def refuses_write(family: str, rtype: str) -> bool:
    return family == EPIC_LIKE and rtype in EPIC_REFUSED_WRITES


def check_write(family: str, rtype: str) -> None:
    """Raise the refusal for a write (create, update or delete) of ``rtype``, if the family refuses it."""
    if rtype == "Subscription" and not offers_subscriptions(family):
        raise FhirError(403, "This EHR does not support Subscriptions; notes arrive by its HL7v2 feed or by "
                             "per-patient search", "not-supported")
    if refuses_write(family, rtype):
        raise FhirError(403, f"This EHR does not accept {rtype} writes from this client; results reach the "
                             "clinician through CDS Hooks or HL7v2", "forbidden")


def check_search(family: str, rtype: str, params: list[tuple[str, str]]) -> None:
    """An epic-like DocumentReference search without a patient is a 400 (Epic requires one)."""
    if family != EPIC_LIKE:
        return
    if rtype == "Subscription":
        raise FhirError(403, "This EHR does not support Subscriptions", "not-supported")
    if rtype == "DocumentReference":
        names = {name.partition(":")[0] for name, value in params if value}
        if not names & set(PATIENT_PARAMS):
            raise FhirError(400, "DocumentReference search requires the patient (or subject) parameter",
                            "required")
