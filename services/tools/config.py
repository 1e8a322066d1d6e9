"""How the tools service reaches one tenant's EHR, from the tenant registry.

    [tenants.<id>]
    ehr_base_url = ""                                # empty: <VIGIL_EHR_URL>/fhir/<tenant>
    [tenants.<id>.settings]
    fhir_client_id = "vigil-tools"                   # SMART Backend Services client id
    fhir_private_key_file = "/run/secrets/<id>-fhir.pem"   # its private key (PEM), RS384 or ES384
    fhir_key_alg = "RS384"                           # RS384 (default) | ES384
    fhir_key_id = "..."                              # optional kid of the registered JWK
    fhir_scope = "system/*.rs"                       # scopes requested (default system/*.rs)
                                                     # scheduling writes need e.g. system/*.cruds
    fhir_token_url = ""                              # optional; discovered from .well-known otherwise

Without ``fhir_client_id`` the tenant's EHR is called without authentication, which is refused
when VIGIL_ENV=prod.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from services.core.config import ConfigError
from services.core.fhir import ALGORITHMS, SmartCredentials
from services.core.tenancy import Tenant

DEFAULT_SCOPE = "system/*.rs"


@dataclass(frozen=True)
class FhirAccess:
    tenant: str
    base_url: str
    credentials: SmartCredentials | None

    @classmethod
    def from_tenant(cls, tenant: Tenant, ehr_url: str, environment: str) -> "FhirAccess":
        where = f"tenant {tenant.id}: settings"
        client_id = tenant.setting("fhir_client_id")
        if not client_id:
            if environment == "prod":
                raise ConfigError(f"{where}.fhir_client_id is required when VIGIL_ENV=prod")
            return cls(tenant.id, tenant.fhir_base(ehr_url), None)
        key_file = tenant.setting("fhir_private_key_file")
        if not key_file:
            raise ConfigError(f"{where}.fhir_private_key_file is required with fhir_client_id")
        try:
            pem = Path(key_file).expanduser().read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{where}.fhir_private_key_file={key_file!r}: cannot read "
                              f"({getattr(exc, 'strerror', None) or type(exc).__name__})") from None
        alg = tenant.setting("fhir_key_alg", "RS384")
        if alg not in ALGORITHMS:
            raise ConfigError(f"{where}.fhir_key_alg={alg!r}: expected one of {', '.join(ALGORITHMS)}")
        credentials = SmartCredentials(client_id=client_id, private_key_pem=pem, alg=alg,
                                       kid=tenant.setting("fhir_key_id") or None,
                                       scope=tenant.setting("fhir_scope") or DEFAULT_SCOPE,
                                       token_url=tenant.setting("fhir_token_url") or None)
        return cls(tenant.id, tenant.fhir_base(ehr_url), credentials)
