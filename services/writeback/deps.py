"""What the writeback handler needs in one process: per-tenant EHR clients (own SMART
credentials and connection pool each), tenant database pools (the mode store, the tenant keys
that open evidence quotes). Writeback owns no table: its idempotency is the EHR identifiers."""
from __future__ import annotations


from services.core import modes
from services.core.config import Settings
from services.core.crypto import Keyring
from services.core.ehraccess import EhrClients
from services.core.fhir import FhirClient
from services.core.secrets import SecretSettings
from services.core.tenantdir import TenantDirectory
from services.core.tenantdb import TenantPools
from services.core.logging import get_logger
from services.writeback.config import PREFIX, WRITE_SCOPE

log = get_logger("vigil.writeback")


def supports_transaction(capabilities: dict | None) -> bool:
    """Does the CapabilityStatement declare the system-level ``transaction`` interaction?"""
    for rest in (capabilities or {}).get("rest", []):
        if any(i.get("code") == "transaction" for i in rest.get("interaction", [])):
            return True
    return False


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
        self.ehr = EhrClients(settings.ehr_url, settings.environment, prefix=PREFIX, default_scope=WRITE_SCOPE,
                              tenants=self.directory.get, fixed=clients)   # tests: a started client per tenant

    async def start(self) -> None:
        await self.warm()

    async def warm(self) -> None:
        """Start every registered tenant's EHR client now (SMART discovery, CapabilityStatement), so a
        misconfigured tenant shows in the log at start-up; a failure here is retried on first use."""
        from services.core.tenancy import Registry

        try:
            tenants = [t.id for t in Registry.load(self.settings.tenants_file)]
        except Exception as exc:  # a missing or broken registry: the stage host reports it
            log.warning("writeback.registry_unreadable", error_type=type(exc).__name__)
            return
        for tenant in tenants:
            try:
                client = await self.client(tenant)
            except Exception as exc:
                log.warning("writeback.ehr_unreachable", tenant=tenant, error_type=type(exc).__name__)
                continue
            if not supports_transaction(client.capabilities):
                log.warning("writeback.no_transaction_support", tenant=tenant)

    async def client(self, tenant: str) -> FhirClient:
        """The tenant's EHR client (CapabilityStatement read when it is first made)."""
        return await self.ehr.client(tenant)

    async def close(self) -> None:
        await self.ehr.close()
        if self._own_pools:
            await self.pools.close()
