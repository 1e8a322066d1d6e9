"""What the scheduling operations share: the tenant's FHIR client, the action ledger, slot holds,
and the conversion between ledger rows and ``ActionResult`` messages."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from services.core.errors import ValidationError
from services.core.grpc.auth import current_caller
from services.core.tenancy import Tenant
from services.core.tenantdir import TenantDirectory
from services.tools.action_ledger import ActionLedger
from services.tools.clients import TenantFhir
from services.tools.holds import SlotHolds
from vigil.v1 import tools_pb2

#: Identifier systems of the resources scheduling writes (conditional creates and reconciliation).
ACTION_SYSTEM = "urn:vigil:scheduling-action"
CONVERSATION_SYSTEM = "urn:vigil:conversation"
RESULT_FIELDS = ("idempotency_key", "kind", "status", "resource_ref", "version", "start", "end", "slot_id",
                 "reason", "patient_id")


@dataclass
class SchedulingDeps:
    tenants: TenantDirectory
    fhir: TenantFhir
    ledger: ActionLedger
    holds: SlotHolds

    def tenant(self) -> Tenant:
        return self.tenants.get(current_caller().tenant)


def action_result(response: dict, replayed: bool = False) -> tools_pb2.ActionResult:
    return tools_pb2.ActionResult(replayed=replayed, **{k: str(response.get(k) or "") for k in RESULT_FIELDS})


def parse_instant(name: str, value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError(f"{name} must be an ISO 8601 date-time", code=f"bad_{name}") from None
    if parsed.tzinfo is None:
        raise ValidationError(f"{name} must carry a time zone offset", code=f"bad_{name}")
    return parsed


def same_instant(a: str, b: str) -> bool:
    try:
        return parse_instant("start", a) == parse_instant("start", b)
    except ValidationError:
        return False


def fhir_instant(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def has_patient(appointment: dict, patient_id: str) -> bool:
    return any((p.get("actor") or {}).get("reference") == f"Patient/{patient_id}"
               for p in appointment.get("participant") or ())
