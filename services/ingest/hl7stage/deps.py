"""What the hl7 stage holds for every tenant: pools, keyring, patient keys, the EHR directory."""
from __future__ import annotations

from services.core import crypto
from services.core.config import Settings
from services.core.db import create_pool
from services.core.secrets import SecretSettings
from services.core.tenancy import Registry, Tenant, TenantError
from services.core.tenantdb import TenantPools
from services.ingest.directory import EhrDirectory
from services.ingest.ehr import TenantEhr
from services.ingest.hl7.patientkey import PatientKeys
from services.ingest.store import schema


#: The stage's own SMART client per tenant: ``hl7_client_id``, ``hl7_private_key_file``, ... (see
#: ``services.ingest.directory``); scope ``system/Patient.rs`` suffices unless the tenant takes copies.
SMART_PREFIX = "hl7"


class Hl7Deps:
    """Started and closed by the stage host (``start`` migrates ingest's tables)."""

    def __init__(self, settings: Settings, secrets: SecretSettings | None = None, *, registry: Registry | None = None,
                 clients: dict | None = None, migrate: bool = True):
        self.settings = settings
        self.secrets = secrets or SecretSettings.from_env()
        self._fixed_registry = registry
        self.registry = registry or Registry.load(settings.tenants_file)
        self.pools = TenantPools(settings, self.secrets)
        self.keyring = crypto.Keyring(self.pools)
        self.keys = PatientKeys(self.secrets)
        self.directory = EhrDirectory(settings, self.registry, clients=clients, prefix=SMART_PREFIX)
        self._migrate = migrate

    async def start(self) -> None:
        if self._migrate:
            admin = await create_pool(self.settings, min_size=1, max_size=2)
            try:
                await schema.migrate(admin)
            finally:
                await admin.close()

    def tenant(self, tenant_id: str) -> Tenant:
        """The tenant's registry entry (the file is read again for a tenant added since the start)."""
        try:
            return self.registry.get(tenant_id)
        except TenantError:
            if self._fixed_registry is not None:
                raise
            fresh = Registry.load(self.settings.tenants_file)
            self.registry.put(fresh.get(tenant_id))
            return self.registry.get(tenant_id)

    async def ehr(self, tenant_id: str) -> TenantEhr:
        self.tenant(tenant_id)
        return await self.directory(tenant_id)

    async def close(self) -> None:
        await self.directory.close()
        await self.pools.close()
