"""An OpenAI-compatible chat endpoint configured per tenant, for agents that call a model
directly (tool calling). Settings live in the tenant registry under a prefix per use::

    [tenants.<id>.settings]
    scheduling_llm_base_url = "https://llm.example/v1"
    scheduling_llm_model = "gpt-4o-mini"
    scheduling_llm_api_key_env = "NV_LLM_KEY"     # or scheduling_llm_api_key_file = "/run/secrets/..."
    scheduling_llm_timeout_seconds = 30

``LlmEndpoint.from_tenant(tenant, "scheduling_llm")`` fails fast naming the tenant and key (never
the key's value); ``endpoint.client()`` is an ``openai.AsyncOpenAI`` with the library's own
retries off (callers own the retry policy).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping
from urllib.parse import urlparse

from services.core.config import ConfigError
from services.core.tenancy import Tenant

DEFAULT_TIMEOUT_S = 30.0
#: Endpoints without authentication (local servers) still need a non-empty key for the client.
NO_KEY = "unused"


@dataclass(frozen=True)
class LlmEndpoint:
    tenant: str
    base_url: str
    model: str
    api_key: str = field(repr=False)
    timeout_s: float = DEFAULT_TIMEOUT_S

    @classmethod
    def from_tenant(cls, tenant: Tenant, prefix: str, env: Mapping[str, str] | None = None) -> "LlmEndpoint":
        env = os.environ if env is None else env
        where = f"tenant {tenant.id}: settings.{prefix}"
        base_url = tenant.setting(f"{prefix}_base_url") or ""
        parsed = urlparse(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ConfigError(f"{where}_base_url must be an http(s) URL of an OpenAI-compatible endpoint")
        model = tenant.setting(f"{prefix}_model") or ""
        if not model:
            raise ConfigError(f"{where}_model is required")
        key_env, key_file = tenant.setting(f"{prefix}_api_key_env"), tenant.setting(f"{prefix}_api_key_file")
        if key_env and key_file:
            raise ConfigError(f"{where}_api_key_env and _api_key_file are exclusive")
        api_key = NO_KEY
        if key_env:
            api_key = env.get(key_env) or ""
            if not api_key:
                raise ConfigError(f"{where}_api_key_env names {key_env}, which is not set")
        elif key_file:
            try:
                api_key = Path(key_file).read_text(encoding="utf-8").strip()
            except OSError:
                raise ConfigError(f"{where}_api_key_file cannot be read") from None
        try:
            timeout = float(tenant.setting(f"{prefix}_timeout_seconds", DEFAULT_TIMEOUT_S))
        except (TypeError, ValueError):
            raise ConfigError(f"{where}_timeout_seconds must be a number") from None
        if not 0 < timeout <= 600:
            raise ConfigError(f"{where}_timeout_seconds must be in (0, 600]")
        return cls(tenant.id, base_url, model, api_key, timeout)

    def client(self):
        import openai

        return openai.AsyncOpenAI(base_url=self.base_url, api_key=self.api_key, max_retries=0, timeout=self.timeout_s)
