"""One FHIR client (own connection pool, own SMART credentials) per tenant."""
from __future__ import annotations

import re

from services.core.errors import FatalError, PermissionDeniedError, UnauthenticatedError, ValidationError
from services.core.fhir import FhirClient, FhirClients
from services.core.tenancy import Tenant
from services.tools.config import access_for

#: FHIR id / versionId syntax (R4: [A-Za-z0-9\-\.]{1,64}).
FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def check_id(name: str, value: str) -> str:
    if not FHIR_ID.match(value or ""):
        raise ValidationError(f"{name} must be a FHIR id (1-64 of A-Z a-z 0-9 - .)", code=f"bad_{name}")
    return value


class TenantFhir:
    def __init__(self, ehr_url: str, environment: str):
        self.ehr_url = ehr_url
        self.environment = environment
        self._clients = FhirClients()

    async def client(self, tenant: Tenant) -> FhirClient:
        access = access_for(tenant, self.ehr_url, self.environment)
        return await self._clients.get(tenant.id, access.base_url, access.credentials)

    async def close(self) -> None:
        await self._clients.close()


def ehr_refused(exc: Exception) -> Exception:
    """The EHR refusing *our* credentials is our fault, not the caller's: never UNAUTHENTICATED to them."""
    if isinstance(exc, (UnauthenticatedError, PermissionDeniedError)):
        return FatalError("the EHR refused the tools service's credentials", code="ehr_auth")
    return exc
