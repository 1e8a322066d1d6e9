"""Each tenant's EHR: a started FHIR client per tenant, SMART credentials from the registry.

Tenant settings (``[tenants.<t>.settings]``): ``ehr_client_id``, ``ehr_private_key_file``
(PEM), optional ``ehr_key_alg`` (RS384 | ES384), ``ehr_key_id``, ``ehr_scope``. Without a
client id the EHR is called without authentication (a sandbox with auth off).
"""
from __future__ import annotations


from services.core.config import Settings
from services.core.ehraccess import EhrAccess
from services.core.fhir import FhirClient, FhirClients, SmartCredentials
from services.core.tenancy import Registry
from services.ingest.ehr import TenantEhr
from services.ingest.hl7.mapping.common import Mapping

DEFAULT_SCOPE = "system/*.cruds"


def credentials_for(tenant, settings: Settings) -> SmartCredentials | None:
    return EhrAccess.from_tenant(tenant, settings.ehr_url, settings.environment, prefix="ehr",
                                 default_scope=DEFAULT_SCOPE).credentials


class EhrDirectory:
    """``await directory(tenant)`` -> TenantEhr; ``await directory.write(tenant, mapping)`` for HL7."""

    def __init__(self, settings: Settings, registry: Registry, clients: dict[str, FhirClient] | None = None):
        self.settings, self.registry = settings, registry
        self._clients = FhirClients()
        self._fixed = dict(clients or {})

    async def __call__(self, tenant: str) -> TenantEhr:
        if tenant in self._fixed:
            return TenantEhr(self._fixed[tenant])
        cfg = self.registry.get(tenant)
        client = await self._clients.get(tenant, cfg.fhir_base(self.settings.ehr_url), credentials_for(cfg, self.settings))
        return TenantEhr(client)

    async def write(self, tenant: str, mapping: Mapping) -> list[tuple[dict, str]]:
        return await (await self(tenant)).write(tenant, mapping)

    async def close(self) -> None:
        await self._clients.close()
