"""How a service reaches one tenant's EHR: base URL and its own SMART Backend Services client.

Each service that talks to the EHR has its own registered SMART client (least privilege: tools
reads, writeback writes Tasks and evidence, ingest reads and writes what HL7 maps to), read
from the tenant registry under that service's prefix::

    [tenants.<id>.settings]
    <prefix>_client_id = "vigil-writeback"          # SMART Backend Services client id
    <prefix>_private_key_file = "/run/secrets/..."  # its private key (PEM), RS384 or ES384
    <prefix>_key_alg = "RS384"                      # RS384 | ES384; default: the key's own
    <prefix>_key_id = "..."                         # optional kid of the registered JWK
    <prefix>_scope = "..."                          # scopes requested (default: the service's)
    <prefix>_token_url = ""                         # optional; discovered from .well-known otherwise

Prefixes in use: ``fhir`` (tools), ``writeback`` (writeback), ``hl7out`` (hl7out), ``ehr`` (ingest),
``hl7`` (ingest's hl7 stage). Without a client id the EHR is called without authentication, which
is refused when VIGIL_ENV=prod.

``EhrClients`` is the one loader of a service's per-tenant EHR clients: the tenant's access read
from the registry as above, one started ``FhirClient`` per tenant (own pool, own credentials,
CapabilityStatement read when made), replaced when the tenant's base URL or credentials change::

    ehr = EhrClients(settings.ehr_url, settings.environment, prefix="writeback",
                     default_scope=WRITE_SCOPE, tenants=TenantDirectory(settings.tenants_file).get)
    client = await ehr.client("northvalley")      # or a Tenant
    await ehr.close()
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from services.core.config import ConfigError
from services.core.fhir import ALGORITHMS, FhirClient, FhirClients, SmartCredentials, key_algorithm
from services.core.tenancy import Tenant


@dataclass(frozen=True)
class EhrAccess:
    tenant: str
    base_url: str
    credentials: SmartCredentials | None

    @classmethod
    def from_tenant(cls, tenant: Tenant, ehr_url: str, environment: str, *, prefix: str,
                    default_scope: str) -> "EhrAccess":
        where = f"tenant {tenant.id}: settings.{prefix}"
        client_id = tenant.setting(f"{prefix}_client_id")
        if not client_id:
            if environment == "prod":
                raise ConfigError(f"{where}_client_id is required when VIGIL_ENV=prod")
            return cls(tenant.id, tenant.fhir_base(ehr_url), None)
        key_file = tenant.setting(f"{prefix}_private_key_file")
        if not key_file:
            raise ConfigError(f"{where}_private_key_file is required with {prefix}_client_id")
        try:
            pem = Path(key_file).expanduser().read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{where}_private_key_file={key_file!r}: cannot read "
                              f"({getattr(exc, 'strerror', None) or type(exc).__name__})") from None
        alg = tenant.setting(f"{prefix}_key_alg")
        if alg and alg not in ALGORITHMS:
            raise ConfigError(f"{where}_key_alg={alg!r}: expected one of {', '.join(ALGORITHMS)}")
        try:
            key_alg = key_algorithm(pem)
        except ValueError as exc:
            raise ConfigError(f"{where}_private_key_file={key_file!r}: {exc}") from None
        if alg and alg != key_alg:
            raise ConfigError(f"{where}_key_alg={alg!r} but the key in {prefix}_private_key_file is for {key_alg}")
        alg = key_alg
        credentials = SmartCredentials(client_id=client_id, private_key_pem=pem, alg=alg,
                                       kid=tenant.setting(f"{prefix}_key_id") or None,
                                       scope=tenant.setting(f"{prefix}_scope") or default_scope,
                                       token_url=tenant.setting(f"{prefix}_token_url") or None)
        return cls(tenant.id, tenant.fhir_base(ehr_url), credentials)


#: The ``<prefix>_...`` tenant settings an ``EhrAccess`` is made of.
SETTING_NAMES = ("client_id", "private_key_file", "key_alg", "key_id", "scope", "token_url")


def _file_stamp(path: str) -> tuple | None:
    try:
        st = os.stat(Path(path).expanduser())
    except (OSError, ValueError):
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


class EhrClients:
    """One service's EHR clients, one per tenant, under the service's SMART prefix.

    ``tenants`` resolves a tenant id (``TenantDirectory.get`` or ``Registry.get``); callers that
    hold a ``Tenant`` already may pass it instead of the id. ``fixed`` (tests) maps tenant ids to
    started clients used as they are and never closed here."""

    def __init__(self, ehr_url: str, environment: str, *, prefix: str, default_scope: str,
                 tenants: Callable[[str], Tenant] | None = None, fixed: Mapping[str, FhirClient] | None = None):
        self.ehr_url, self.environment = ehr_url, environment
        self.prefix, self.default_scope = prefix, default_scope
        self.tenants = tenants
        self._fixed = dict(fixed or {})
        self._clients = FhirClients()
        self._access: dict[str, tuple[tuple, tuple | None, EhrAccess]] = {}

    def access(self, tenant: Tenant) -> EhrAccess:
        """The tenant's access, read again (key file parsed) only when its registry entry or its
        key file (modification time, size, inode) changed since the last call."""
        entry = (tenant.fhir_base(self.ehr_url),
                 *(tenant.setting(f"{self.prefix}_{name}") for name in SETTING_NAMES))
        key_file = tenant.setting(f"{self.prefix}_private_key_file")
        stamp = _file_stamp(key_file) if key_file else None
        cached = self._access.get(tenant.id)
        if cached is not None and cached[0] == entry and cached[1] == stamp:
            return cached[2]
        access = EhrAccess.from_tenant(tenant, self.ehr_url, self.environment, prefix=self.prefix,
                                       default_scope=self.default_scope)
        self._access[tenant.id] = (entry, stamp, access)
        return access

    async def client(self, tenant: str | Tenant) -> FhirClient:
        tenant_id = tenant if isinstance(tenant, str) else tenant.id
        if tenant_id in self._fixed:
            return self._fixed[tenant_id]
        if isinstance(tenant, str):
            if self.tenants is None:
                raise TypeError("EhrClients.client(tenant id) needs a tenants lookup; pass the Tenant")
            tenant = self.tenants(tenant)
        access = self.access(tenant)
        return await self._clients.get(tenant_id, access.base_url, access.credentials)

    async def close(self) -> None:
        await self._clients.close()
