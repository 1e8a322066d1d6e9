"""Settings of the EHR sandbox, read once from the environment (fails fast)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Mapping

from services.core.config import ConfigError, Settings

#: Used only when VIGIL_ENV is dev or test and no secret is configured; prod must set its own.
DEV_ADMIN_SECRET = "vigil-dev-admin-secret"
#: 8 MiB: the Synthea sample transaction (0.8 MB) fits ten times over; anything larger is refused with 413.
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
#: SMART Backend Services: assertions may live at most 5 minutes; issued access tokens live 5 minutes too.
MAX_ASSERTION_LIFETIME_S = 300
ACCESS_TOKEN_LIFETIME_S = 300
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


@dataclass(frozen=True)
class EhrSettings:
    core: Settings
    admin_secret: str = field(repr=False)
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    public_url: str = ""  # empty: derived from each request's own URL

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, core: Settings | None = None) -> "EhrSettings":
        source = os.environ if env is None else env
        core = core or Settings.from_env(source)
        secret = source.get("VIGIL_EHR_ADMIN_SECRET") or ""
        if not secret:
            if core.environment == "prod":
                raise ConfigError("VIGIL_EHR_ADMIN_SECRET is required when VIGIL_ENV=prod")
            secret = DEV_ADMIN_SECRET
        if len(secret) < 16:
            raise ConfigError("VIGIL_EHR_ADMIN_SECRET must be at least 16 characters")
        raw = source.get("VIGIL_EHR_MAX_BODY_BYTES") or str(DEFAULT_MAX_BODY_BYTES)
        if not raw.isdigit() or int(raw) < 1024:
            raise ConfigError(f"VIGIL_EHR_MAX_BODY_BYTES={raw!r}: expected a whole number >= 1024")
        return cls(core=core, admin_secret=secret, max_body_bytes=int(raw),
                   public_url=(source.get("VIGIL_EHR_PUBLIC_URL") or "").rstrip("/"))
