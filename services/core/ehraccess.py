"""How a service reaches one tenant's EHR: base URL and its own SMART Backend Services client.

Each service that talks to the EHR has its own registered SMART client (least privilege: tools
reads, writeback writes Tasks and evidence, ingest reads and writes what HL7 maps to), read
from the tenant registry under that service's prefix::

    [tenants.<id>.settings]
    <prefix>_client_id = "vigil-writeback"          # SMART Backend Services client id
    <prefix>_private_key_file = "/run/secrets/..."  # its private key (PEM), RS384 or ES384
    <prefix>_key_alg = "RS384"                      # RS384 (default) | ES384
    <prefix>_key_id = "..."                         # optional kid of the registered JWK
    <prefix>_scope = "..."                          # scopes requested (default: the service's)
    <prefix>_token_url = ""                         # optional; discovered from .well-known otherwise

Prefixes in use: ``fhir`` (tools), ``writeback`` (writeback), ``ehr`` (ingest). Without a client
id the EHR is called without authentication, which is refused when VIGIL_ENV=prod.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from services.core.config import ConfigError
from services.core.fhir import ALGORITHMS, SmartCredentials
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
        alg = tenant.setting(f"{prefix}_key_alg", "RS384")
        if alg not in ALGORITHMS:
            raise ConfigError(f"{where}_key_alg={alg!r}: expected one of {', '.join(ALGORITHMS)}")
        credentials = SmartCredentials(client_id=client_id, private_key_pem=pem, alg=alg,
                                       kid=tenant.setting(f"{prefix}_key_id") or None,
                                       scope=tenant.setting(f"{prefix}_scope") or default_scope,
                                       token_url=tenant.setting(f"{prefix}_token_url") or None)
        return cls(tenant.id, tenant.fhir_base(ehr_url), credentials)
