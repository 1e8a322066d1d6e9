"""Per-tenant LLM settings, read from the tenant registry (``[tenants.<id>.settings]``): the one
LLM endpoint setting of the platform. Every model call of every agent goes through this service
(extraction's ``Extract``, the scheduling agent's ``Chat``) and is counted in its cost ledger.

An endpoint is read under a prefix per use, with the same rules for every prefix: ``llm`` for
extraction, ``scheduling_llm`` for the scheduling agent (``PURPOSES``)::

    engine = "llm"                          # extraction: rules (default) | llm | hybrid
    llm_base_url = "https://llm.example/v1" # <prefix>_base_url: any OpenAI-compatible endpoint
    llm_model = "gpt-4o-mini"               # <prefix>_model
    llm_api_key_env = "NORTHVALLEY_LLM_KEY" # <prefix>_api_key_env: an environment variable holding the key, or
    llm_api_key_file = "/run/secrets/nv-llm"# <prefix>_api_key_file: a file holding it (neither: no key, a local server)
    llm_timeout_seconds = 30                # <prefix>_timeout_seconds, 0.05 .. 600
    llm_price_input_per_mtok = 0.15         # <prefix>_price_input_per_mtok: USD per million prompt tokens
    llm_price_output_per_mtok = 0.60        # <prefix>_price_output_per_mtok: USD per million completion tokens

and, for the tenant as a whole (every purpose's spend counts):

    llm_daily_budget_usd = 25.0             # 0 or absent: no budget
    llm_over_budget = "rules"               # extraction: rules (fall back) | defer (RetryableError with retry_after)

Parsed into a frozen object that fails fast with the tenant and key named (never the key value).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping
from urllib.parse import urlparse

from services.core.config import ConfigError
from services.core.tenancy import Tenant

ENGINE_NAMES = ("rules", "llm", "hybrid")
DEFAULT_ENGINE = "rules"
OVER_BUDGET_ACTIONS = ("rules", "defer")
DEFAULT_TIMEOUT_SECONDS = 30.0
MIN_TIMEOUT_SECONDS, MAX_TIMEOUT_SECONDS = 0.05, 600.0
#: What a model call is for -> the settings prefix of its endpoint.
PURPOSES = {"extraction": "llm", "scheduling": "scheduling_llm"}
#: Endpoints without authentication (local servers) still need a non-empty key for the client.
NO_KEY = "unused"


def tenant_engine(tenant: Tenant) -> str:
    engine = tenant.setting("engine", DEFAULT_ENGINE) or DEFAULT_ENGINE
    if engine not in ENGINE_NAMES:
        raise ConfigError(f"tenant {tenant.id}: settings.engine={engine!r} is not one of {', '.join(ENGINE_NAMES)}")
    return engine


@dataclass(frozen=True)
class LlmConfig:
    tenant: str
    base_url: str
    model: str
    api_key: str = field(repr=False)
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    daily_budget_usd: float = 0.0
    over_budget: str = "rules"
    price_input_per_mtok: float = 0.0
    price_output_per_mtok: float = 0.0
    purpose: str = "extraction"

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.price_input_per_mtok + completion_tokens * self.price_output_per_mtok) / 1e6

    @classmethod
    def from_tenant(cls, tenant: Tenant, env: Mapping[str, str] | None = None,
                    purpose: str = "extraction") -> "LlmConfig":
        source = os.environ if env is None else env
        where = f"tenant {tenant.id}: settings"
        prefix = PURPOSES.get(purpose)
        if prefix is None:
            raise ValueError(f"unknown LLM purpose {purpose!r}")

        def number(key: str, default: float, minimum: float = 0.0, maximum: float | None = None) -> float:
            raw = tenant.setting(key, default)
            if isinstance(raw, bool) or not isinstance(raw, (int, float)) or raw < minimum \
                    or (maximum is not None and raw > maximum):
                bound = f" and <= {maximum}" if maximum is not None else ""
                raise ConfigError(f"{where}.{key}={raw!r}: expected a number >= {minimum}{bound}")
            return float(raw)

        base_url = tenant.setting(f"{prefix}_base_url")
        parsed = urlparse(base_url or "")
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ConfigError(f"{where}.{prefix}_base_url={base_url!r}: expected an http(s) URL")
        model = tenant.setting(f"{prefix}_model")
        if not isinstance(model, str) or not model:
            raise ConfigError(f"{where}.{prefix}_model is required for the {purpose} model")
        key_env, key_file = tenant.setting(f"{prefix}_api_key_env"), tenant.setting(f"{prefix}_api_key_file")
        if key_env and key_file:
            raise ConfigError(f"{where}: {prefix}_api_key_env and {prefix}_api_key_file are exclusive")
        api_key = NO_KEY
        if key_env:
            api_key = source.get(key_env) or ""
            if not api_key:
                raise ConfigError(f"{where}.{prefix}_api_key_env: environment variable {key_env} is not set")
        elif key_file:
            try:
                api_key = Path(key_file).expanduser().read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"{where}.{prefix}_api_key_file={key_file!r}: cannot read ({exc.strerror})") from None
            if not api_key:
                raise ConfigError(f"{where}.{prefix}_api_key_file={key_file!r} is empty")
        over = tenant.setting("llm_over_budget", "rules")
        if over not in OVER_BUDGET_ACTIONS:
            raise ConfigError(f"{where}.llm_over_budget={over!r}: expected one of {', '.join(OVER_BUDGET_ACTIONS)}")
        timeout = number(f"{prefix}_timeout_seconds", DEFAULT_TIMEOUT_SECONDS, MIN_TIMEOUT_SECONDS, MAX_TIMEOUT_SECONDS)
        return cls(tenant=tenant.id, base_url=base_url.rstrip("/"), model=model, api_key=api_key,
                   timeout_seconds=timeout, daily_budget_usd=number("llm_daily_budget_usd", 0.0),
                   over_budget=over, price_input_per_mtok=number(f"{prefix}_price_input_per_mtok", 0.0),
                   price_output_per_mtok=number(f"{prefix}_price_output_per_mtok", 0.0), purpose=purpose)
