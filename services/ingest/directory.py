"""Each tenant's EHR: a started FHIR client per tenant, SMART credentials from the registry.

Tenant settings (``[tenants.<t>.settings]``): ``<prefix>_client_id``, ``<prefix>_private_key_file``
(PEM), optional ``<prefix>_key_alg`` (RS384 | ES384; default: the key's own), ``<prefix>_key_id``, ``<prefix>_scope``, with
prefix ``ehr`` for the ingest service and ``hl7`` for the hl7 stage (its own SMART client: it reads
Patients by identifier, and writes only when the tenant asks for copies). Without a client id the
EHR is called without authentication (a sandbox with auth off).
"""
from __future__ import annotations


from services.core.config import Settings
from services.core.ehraccess import EhrAccess, EhrClients
from services.core.fhir import FhirClient, SmartCredentials
from services.core.tenancy import Registry
from services.ingest.ehr import TenantEhr
from services.ingest.hl7.mapping.common import Mapping

DEFAULT_SCOPE = "system/*.cruds"


def credentials_for(tenant, settings: Settings, prefix: str = "ehr") -> SmartCredentials | None:
    return EhrAccess.from_tenant(tenant, settings.ehr_url, settings.environment, prefix=prefix,
                                 default_scope=DEFAULT_SCOPE).credentials


class EhrDirectory:
    """``await directory(tenant)`` -> TenantEhr; ``await directory.write(tenant, mapping)`` for HL7."""

    def __init__(self, settings: Settings, registry: Registry, clients: dict[str, FhirClient] | None = None,
                 prefix: str = "ehr"):
        self.settings, self.registry, self.prefix = settings, registry, prefix
        self.ehr = EhrClients(settings.ehr_url, settings.environment, prefix=prefix, default_scope=DEFAULT_SCOPE,
                              tenants=registry.get, fixed=clients)

    async def __call__(self, tenant: str) -> TenantEhr:
        return TenantEhr(await self.ehr.client(tenant))

    async def write(self, tenant: str, mapping: Mapping) -> list[tuple[dict, str]]:
        return await (await self(tenant)).write(tenant, mapping)

    async def close(self) -> None:
        await self.ehr.close()
