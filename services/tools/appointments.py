"""ListAppointments: the patient's appointments (upcoming unless include_past), earliest first."""
from __future__ import annotations

from datetime import datetime, timezone

from services.core.errors import VigilError
from services.tools.clients import check_id, ehr_refused
from services.tools.scheduling_base import SchedulingDeps, fhir_instant
from vigil.v1 import tools_pb2


class ListAppointments:
    def __init__(self, deps: SchedulingDeps):
        self.deps = deps

    async def __call__(self, request: tools_pb2.ListAppointmentsRequest, context) -> tools_pb2.AppointmentList:
        tenant = self.deps.tenant()
        patient_id = check_id("patient_id", request.patient_id)
        params = [("patient", f"Patient/{patient_id}"), ("_count", "100")]
        if not request.include_past:
            params.append(("date", f"ge{fhir_instant(datetime.now(timezone.utc))}"))
        client = await self.deps.fhir.client(tenant)
        try:
            found = await client.search("Appointment", params)
        except VigilError as exc:
            raise ehr_refused(exc) from None
        found.sort(key=lambda a: (a.get("start") or "", a.get("id") or ""))
        return tools_pb2.AppointmentList(appointments=[tools_pb2.AppointmentInfo(
            appointment_id=a["id"], status=a.get("status", ""), start=a.get("start", ""), end=a.get("end", ""),
            slot_id=((a.get("slot") or [{}])[0]).get("reference", "").split("/", 1)[-1],
            practitioner_refs=[(p.get("actor") or {}).get("reference", "") for p in a.get("participant") or ()
                               if (p.get("actor") or {}).get("reference", "").startswith("Practitioner/")])
            for a in found])
