"""What the hl7out stage shares in one process: the tenant directory (profiles), tenant database
pools and keyring (the document store's patient index), the mode store (the ``writeback`` agent's
mode and kill switch govern every results channel), per-tenant EHR clients (Patient reads, only
for notes that came from the EHR's FHIR API) and the per-tenant MLLP links."""
from __future__ import annotations

from services.core import modes
from services.core.config import Settings
from services.core.crypto import Keyring
from services.core.db import create_pool
from services.core.ehraccess import EhrAccess
from services.core.fhir import FhirClient, FhirClients
from services.core.secrets import SecretSettings
from services.core.tenantdb import TenantPools
from services.core.tenantdir import TenantDirectory
from services.hl7out.link import Links

#: The SMART client of this service (registry settings ``hl7out_client_id`` ...): Patient reads only.
PREFIX = "hl7out"
READ_SCOPE = "system/Patient.r"


class Deps:
    def __init__(self, settings: Settings, secrets: SecretSettings | None = None, *,
                 pools: TenantPools | None = None, clients: dict[str, FhirClient] | None = None):
        self.settings = settings
        self.secrets = secrets or SecretSettings.from_env()
        self._own_pools = pools is None
        self.pools = pools or TenantPools(settings, self.secrets)
        self.keyring = Keyring(self.pools, self.secrets)
        self.modes = modes.ModeStore(self.pools, settings.tenants_file)
        self.directory = TenantDirectory(settings.tenants_file)
        self.links = Links()
        self._fixed = dict(clients or {})            # tests: a started client per tenant
        self._clients = FhirClients()

    async def start(self) -> None:
        admin = await create_pool(self.settings, min_size=1, max_size=1)
        try:
            await modes.ensure_schema(admin)
        finally:
            await admin.close()

    async def client(self, tenant: str) -> FhirClient:
        if tenant in self._fixed:
            return self._fixed[tenant]
        access = EhrAccess.from_tenant(self.directory.get(tenant), self.settings.ehr_url, self.settings.environment,
                                       prefix=PREFIX, default_scope=READ_SCOPE)
        return await self._clients.get(tenant, access.base_url, access.credentials)

    async def close(self) -> None:
        await self.links.close()
        await self._clients.close()
        if self._own_pools:
            await self.pools.close()
