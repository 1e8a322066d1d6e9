"""GetPatientContext: active immune checkpoint inhibitor orders and the oncologists on the care team.

Minimum necessary: drug names, order ids and dates, and Practitioner references; no names,
no other medications, no other care team members.
"""
from __future__ import annotations

import asyncio
import re
from urllib.parse import urlencode

from services.core.errors import VigilError
from services.core.fhirbatch import batch_get, entry_resource, searchset, supports_batch
from services.core.grpc.auth import current_caller
from services.core.ici import ICI_NAMES, ICI_RXNORM, RXNORM, ici_drug  # noqa: F401 (re-exported)
from services.core.logging import get_logger
from services.core.tenantdir import TenantDirectory
from services.tools.clients import TenantFhir, check_id, ehr_refused
from vigil.v1 import tools_pb2

log = get_logger("vigil.tools.patient_context")

#: Care team roles that mean "oncologist" (SNOMED CT) ...
ONCOLOGIST_CODES = frozenset({"309295000", "310512001", "309294001", "3842006"})
#: ... or, for roles without those codes, wording that does.
_ONCOLOGY_WORDING = re.compile(r"oncolog", re.IGNORECASE)


def is_oncologist_role(roles: list[dict]) -> bool:
    for role in roles or ():
        for coding in role.get("coding") or ():
            if coding.get("code") in ONCOLOGIST_CODES or _ONCOLOGY_WORDING.search(coding.get("display") or ""):
                return True
        if _ONCOLOGY_WORDING.search(role.get("text") or ""):
            return True
    return False


class GetPatientContext:
    def __init__(self, tenants: TenantDirectory, fhir: TenantFhir):
        self.tenants = tenants
        self.fhir = fhir

    async def __call__(self, request: tools_pb2.GetPatientContextRequest, context) -> tools_pb2.PatientContext:
        tenant = self.tenants.get(current_caller().tenant)
        patient_id = check_id("patient_id", request.patient_id)
        client = await self.fhir.client(tenant)
        subject = f"Patient/{patient_id}"
        try:
            orders, teams = await self._lookups(client, patient_id, subject)
            therapies = [await self._therapy(client, order) for order in orders]
        except VigilError as exc:
            raise ehr_refused(exc) from None
        therapies = sorted((t for t in therapies if t.drug), key=lambda t: (t.authored_on, t.medication_request_id))
        oncologists = sorted({p["member"]["reference"] for team in teams for p in team.get("participant") or ()
                              if (p.get("member") or {}).get("reference", "").startswith("Practitioner/")
                              and is_oncologist_role(p.get("role") or [])})
        log.info("tools.patient_context", tenant=tenant.id, therapies=len(therapies), oncologists=len(oncologists))
        return tools_pb2.PatientContext(patient_id=patient_id, active_immunotherapy=therapies,
                                        oncologist_refs=oncologists)

    @staticmethod
    async def _lookups(client, patient_id: str, subject: str) -> tuple[list[dict], list[dict]]:
        """(active orders, active care teams) of a patient this tenant has: one ``batch`` Bundle when
        the EHR declares it, else (or when an entry did not answer plainly) three requests."""
        queries = (("MedicationRequest", {"patient": subject, "status": "active"}),
                   ("CareTeam", {"patient": subject, "status": "active"}))
        if supports_batch(client.capabilities):
            entries = await batch_get(client, [f"Patient/{patient_id}",
                                               *(f"{rtype}?{urlencode(q)}" for rtype, q in queries)])
            if entries is not None and entry_resource(entries[0]) is not None:
                orders, teams = searchset(entries[1]), searchset(entries[2])
                if orders is not None and teams is not None:
                    return orders, teams
        await client.read("Patient", patient_id)      # NOT_FOUND for a patient this tenant does not have
        orders, teams = await asyncio.gather(*(client.search(rtype, q) for rtype, q in queries))
        return orders, teams

    @staticmethod
    async def _therapy(client, order: dict) -> tools_pb2.Immunotherapy:
        if order.get("status") != "active":
            return tools_pb2.Immunotherapy()
        drug = ici_drug(order.get("medicationCodeableConcept"))
        reference = (order.get("medicationReference") or {}).get("reference") or ""
        if not drug and reference.startswith("Medication/"):
            drug = ici_drug((await client.read("Medication", reference.split("/", 1)[1])).get("code"))
        return tools_pb2.Immunotherapy(medication_request_id=order.get("id") or "", drug=drug,
                                       authored_on=order.get("authoredOn") or "")
