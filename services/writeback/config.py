"""How writeback reaches one tenant's EHR, from the tenant registry (its own SMART client).

    [tenants.<id>.settings]
    writeback_client_id = "vigil-writeback"              # SMART Backend Services client id
    writeback_private_key_file = "/run/secrets/<id>-writeback.pem"   # PEM, RS384 or ES384
    writeback_key_alg = "RS384"                          # RS384 (default) | ES384
    writeback_key_id = "..."                             # optional kid of the registered JWK
    writeback_scope = "..."                              # default WRITE_SCOPE below
    writeback_token_url = ""                             # optional; else .well-known discovery

Without ``writeback_client_id`` the EHR is called without authentication, which is refused
when VIGIL_ENV=prod (a ConfigError: the decision goes to the DLQ, nothing is written).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from services.core.config import ConfigError
from services.core.fhir import ALGORITHMS, SmartCredentials
from services.core.tenancy import Tenant

#: What writeback needs: search/read Tasks and evidence (idempotency + read-back), write them.
WRITE_SCOPE = ("system/Task.crus system/Observation.crs system/DetectedIssue.crs system/Provenance.crs "
               "system/AuditEvent.cr system/Device.crs system/DocumentReference.r")


@dataclass(frozen=True)
class EhrAccess:
    tenant: str
    base_url: str
    credentials: SmartCredentials | None

    @classmethod
    def from_tenant(cls, tenant: Tenant, ehr_url: str, environment: str) -> "EhrAccess":
        where = f"tenant {tenant.id}: settings"
        client_id = tenant.setting("writeback_client_id")
        if not client_id:
            if environment == "prod":
                raise ConfigError(f"{where}.writeback_client_id is required when VIGIL_ENV=prod")
            return cls(tenant.id, tenant.fhir_base(ehr_url), None)
        key_file = tenant.setting("writeback_private_key_file")
        if not key_file:
            raise ConfigError(f"{where}.writeback_private_key_file is required with writeback_client_id")
        try:
            pem = Path(key_file).expanduser().read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{where}.writeback_private_key_file={key_file!r}: cannot read "
                              f"({getattr(exc, 'strerror', None) or type(exc).__name__})") from None
        alg = tenant.setting("writeback_key_alg", "RS384")
        if alg not in ALGORITHMS:
            raise ConfigError(f"{where}.writeback_key_alg={alg!r}: expected one of {', '.join(ALGORITHMS)}")
        return cls(tenant.id, tenant.fhir_base(ehr_url), SmartCredentials(
            client_id=client_id, private_key_pem=pem, alg=alg, kid=tenant.setting("writeback_key_id") or None,
            scope=tenant.setting("writeback_scope") or WRITE_SCOPE,
            token_url=tenant.setting("writeback_token_url") or None))
