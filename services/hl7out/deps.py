"""What the hl7out stage shares in one process: the tenant directory (profiles), tenant database
pools and keyring (the document store's patient index), the mode store (the ``writeback`` agent's
mode and kill switch govern every results channel), per-tenant EHR clients (Patient reads, only
for notes that came from the EHR's FHIR API) and the per-tenant MLLP links."""
from __future__ import annotations

from services.core import modes
from services.core.config import Settings
from services.core.crypto import Keyring
from services.core.ehraccess import EhrClients
from services.core.errors import FatalError
from services.core.fhir import FhirClient
from services.core.logging import get_logger
from services.core.secrets import SecretSettings
from services.core.tenantdb import TenantPools
from services.core.tenantdir import TenantDirectory
from services.hl7out.link import Links, client_context

log = get_logger("vigil.hl7out")

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
        self.ehr = EhrClients(settings.ehr_url, settings.environment, prefix=PREFIX, default_scope=READ_SCOPE,
                              tenants=self.directory.get, fixed=clients)   # tests: a started client per tenant

    async def start(self) -> None:
        self.check_profiles()  # modes are read only: the control service migrates their table

    def check_profiles(self) -> None:
        """Log, at start-up, every tenant whose results channel cannot work (its TLS trust file), so a
        misconfiguration shows before the first result is dead-lettered for it."""
        from services.core.tenancy import Registry

        try:
            tenants = list(Registry.load(self.settings.tenants_file))
        except Exception as exc:  # a missing or broken registry: the stage host reports it
            log.warning("hl7out.registry_unreadable", error_type=type(exc).__name__)
            return
        for tenant in tenants:
            target = tenant.integration.hl7_out
            if not tenant.integration.delivers("hl7v2") or target is None:
                continue
            try:
                client_context(target)
            except FatalError as exc:
                log.warning("hl7out.tls_unusable", tenant=tenant.id, error_code=exc.code)

    async def client(self, tenant: str) -> FhirClient:
        return await self.ehr.client(tenant)

    async def close(self) -> None:
        await self.links.close()
        await self.ehr.close()
        if self._own_pools:
            await self.pools.close()
