"""Settings of the CDS Hooks service, and each tenant's CDS client (the EHR that calls us).

Process (environment): ``VIGIL_CDS_PORT`` (default 8085), ``VIGIL_CDS_PUBLIC_URL`` (the URL
the EHR uses to reach this service, e.g. ``https://vigil.example.org/cds``; the JWT ``aud``
must be ``<public url>/<tenant>/cds-services/<service id>``; default: the request's own base
URL), ``VIGIL_CDS_INBOX_URL`` (where card links point; default ``VIGIL_EHR_URL``).

Tenant (``[tenants.<id>.settings]`` in the registry)::

    cds_client_iss = "https://ehr.northvalley.org"        # the CDS client's JWT issuer
    cds_jwks_file = "/run/secrets/<id>-cds-jwks.json"      # its public keys (JWKS), ES384 / RS384

A tenant without both is refused (401): nobody can call its hooks.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from services.core.config import ConfigError
from services.core.tenancy import Tenant

DEFAULT_PORT = 8085


@dataclass(frozen=True)
class CdsSettings:
    port: int
    public_url: str | None
    inbox_url: str
    host: str = "127.0.0.1"  # VIGIL_CDS_HOST: loopback unless configured (the manifests set 0.0.0.0)

    @classmethod
    def from_env(cls, env: Mapping[str, str], ehr_url: str) -> "CdsSettings":
        raw = env.get("VIGIL_CDS_PORT") or str(DEFAULT_PORT)
        if not raw.isdigit() or int(raw) > 65535:
            raise ConfigError(f"VIGIL_CDS_PORT={raw!r}: expected a port number")
        public = (env.get("VIGIL_CDS_PUBLIC_URL") or "").rstrip("/") or None
        if public and not public.startswith(("http://", "https://")):
            raise ConfigError(f"VIGIL_CDS_PUBLIC_URL={public!r}: expected an http(s) URL")
        return cls(int(raw), public, (env.get("VIGIL_CDS_INBOX_URL") or ehr_url).rstrip("/"),
                   (env.get("VIGIL_CDS_HOST") or "127.0.0.1").strip())


@dataclass(frozen=True)
class CdsClient:
    issuer: str
    jwks: dict

    @classmethod
    def of(cls, tenant: Tenant) -> "CdsClient | None":
        issuer, path = tenant.setting("cds_client_iss"), tenant.setting("cds_jwks_file")
        if not issuer or not path:
            return None
        try:
            jwks = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"tenant {tenant.id}: cds_jwks_file cannot be read as JSON "
                              f"({type(exc).__name__})") from None
        if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
            raise ConfigError(f"tenant {tenant.id}: cds_jwks_file is not a JWKS (no keys list)")
        return cls(issuer, jwks)
