"""The patient identifiers of a result's PID-3, from where the note came from.

- A note from Vigil's document store (``document.source == "store"``: it came in on the HL7 feed)
  is about the patient its message named: the store row's patient key leads to the patient
  index, whose identifiers (PID-3 as the feed sent it, sealed with the tenant key) are read
  through the tenant's own role and opened here. The EHR is never asked: such a tenant's profile
  may not offer FHIR reads at all. (Both tables are ingest's; this service only reads them, as
  the tools service reads the store's notes.)
- A note from the EHR's FHIR API: the EHR's ``Patient/<id>`` (a read every EHR family offers) and
  its identifiers; the tenant setting ``hl7_patient_identifier_system`` puts that system first.
  A Patient without identifiers is sent by its FHIR id (type ``PI``).

No identifiers at all is a FatalError (dead-lettered, replayable once the patient is known),
never a message about nobody.
"""
from __future__ import annotations

import json

from services.core.errors import FatalError, NotFoundError
from services.core.tenancy import Tenant

#: The purposes the writer sealed under (``services.ingest.store``).
INDEX_PURPOSE = "patient-index"
SYSTEM_SETTING = "hl7_patient_identifier_system"
PI = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "PI"}]}

_STORE_SQL = ("SELECT p.identifiers_sealed FROM ingest_documents d JOIN ingest_patients p "
              "ON p.tenant = d.tenant AND p.patient_key = d.patient_key "
              "WHERE d.tenant = $1 AND d.id = $2 AND ($3::int IS NULL OR d.version = $3) "
              "ORDER BY d.version DESC LIMIT 1")


async def from_store(pools, keyring, tenant: str, document_id: str, version: str | None = None) -> list[dict]:
    number = int(version) if version and str(version).isdigit() else None
    async with pools.tx(tenant, readonly=True) as conn:
        sealed = await conn.fetchval(_STORE_SQL, tenant, document_id, number)
    if sealed is None:
        raise FatalError("the stored note or its patient is not in the document store", code="store_patient_missing")
    found = json.loads((await keyring.decrypt(tenant, bytes(sealed), INDEX_PURPOSE)).decode("utf-8"))
    return [i for i in found if isinstance(i, dict) and i.get("value")]


async def from_ehr(client, tenant: Tenant, patient_id: str) -> list[dict]:
    try:
        patient = await client.read("Patient", patient_id)
    except NotFoundError:
        raise FatalError("the EHR has no such Patient", code="patient_not_in_ehr") from None
    found = [i for i in patient.get("identifier") or [] if isinstance(i, dict) and i.get("value")]
    preferred = tenant.setting(SYSTEM_SETTING)
    found.sort(key=lambda i: i.get("system") != preferred)
    return found or [{"system": "", "value": patient_id, "type": PI}]


async def identifiers(deps, tenant: Tenant, decision: dict) -> list[dict]:
    doc = decision["document"]
    if doc.get("source") == "store":
        found = await from_store(deps.pools, deps.keyring, tenant.id, doc["id"], doc.get("versionId"))
    elif "ehr-fhir" in tenant.integration.note_sources:
        found = await from_ehr(await deps.client(tenant.id), tenant, decision["patient"])
    else:
        raise FatalError("the note is the EHR's but the profile lists no ehr-fhir note source",
                         code="profile_no_ehr_reads")
    if not found:
        raise FatalError("no patient identifier for PID-3", code="no_patient_identifier")
    return found
