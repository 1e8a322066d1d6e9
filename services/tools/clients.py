"""One FHIR client (own connection pool, own SMART credentials) per tenant, and FHIR id checks."""
from __future__ import annotations

import re

from services.core.errors import FatalError, PermissionDeniedError, UnauthenticatedError, ValidationError
from services.core.ehraccess import EhrClients
from services.tools.config import DEFAULT_SCOPE, PREFIX

#: FHIR id / versionId syntax (R4: [A-Za-z0-9\-\.]{1,64}).
FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def check_id(name: str, value: str) -> str:
    if not FHIR_ID.match(value or ""):
        raise ValidationError(f"{name} must be a FHIR id (1-64 of A-Z a-z 0-9 - .)", code=f"bad_{name}")
    return value


def tenant_fhir(ehr_url: str, environment: str) -> EhrClients:
    """The tools service's EHR clients (its own SMART client, ``services.tools.config``)."""
    return EhrClients(ehr_url, environment, prefix=PREFIX, default_scope=DEFAULT_SCOPE)


#: What the operation modules hold: ``await fhir.client(tenant)`` with the caller's Tenant.
TenantFhir = EhrClients


def ehr_refused(exc: Exception) -> Exception:
    """The EHR refusing *our* credentials is our fault, not the caller's: never UNAUTHENTICATED to them."""
    if isinstance(exc, (UnauthenticatedError, PermissionDeniedError)):
        return FatalError("the EHR refused the tools service's credentials", code="ehr_auth")
    return exc
