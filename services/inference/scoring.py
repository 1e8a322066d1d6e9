"""The `llm` and `hybrid` routes as synchronous engines for `vigil eval`.

They run exactly the service's path (``Router``: budget, cache, ledger, evidence checks) for
one tenant of the registry, named by ``VIGIL_EVAL_TENANT``; that tenant's LLM settings choose
the endpoint, and the spend is booked to it like any other call.
"""
from __future__ import annotations

import asyncio
import atexit
import hashlib
import os
from typing import Mapping

from services.core.config import ConfigError, Settings
from services.core import crypto
from services.core.db import create_pool, ensure_schema
from services.core.secrets import SecretSettings
from services.core.tenancy import Registry, TenantError
from services.core.tenantdb import TenantPools
from services.inference.findings import Finding
from services.inference.llm.config import LlmConfig
from services.inference.llm.engine import LlmEngine
from services.inference.llm.ledger import Ledger
from services.inference.routing import Router, RulesAdapter

EVAL_TENANT_VARIABLE = "VIGIL_EVAL_TENANT"


class RoutedScorer:
    def __init__(self, route: str, env: Mapping[str, str] | None = None):
        self.env = os.environ if env is None else env
        self.name = route
        tenant_id = self.env.get(EVAL_TENANT_VARIABLE) or ""
        if not tenant_id:
            raise ConfigError(f"{EVAL_TENANT_VARIABLE} must name the tenant whose LLM settings to evaluate with")
        self.settings = Settings.from_env(self.env)
        try:
            self.tenant = Registry.load(self.settings.tenants_file).get(tenant_id)
        except TenantError as exc:
            raise ConfigError(f"{EVAL_TENANT_VARIABLE}: {exc}") from None
        config = LlmConfig.from_tenant(self.tenant, self.env)        # fail fast on a bad endpoint config
        self.rules = RulesAdapter()
        self.version = config.model if route == "llm" else f"{self.rules.engine.version}+{config.model}"
        self._loop = asyncio.new_event_loop()
        self._router: Router | None = None
        self._closers: list = []
        atexit.register(self.close)

    async def _build(self) -> Router:
        from services.inference.app import TenantRedis

        secrets = SecretSettings.from_env(self.env)
        pool = await create_pool(self.settings, min_size=1, max_size=2)
        pools = TenantPools(self.settings, secrets)
        ledger = Ledger(pool, pools)
        await ledger.ensure_schema()
        await ensure_schema(pool, crypto.SCHEMA_MODULE, crypto.SCHEMA_STEPS)
        redis = TenantRedis(self.settings, secrets)
        llm = LlmEngine(ledger, redis, crypto.Keyring(pools, secrets), env=self.env)
        self._closers = [llm.close, redis.close, pools.close, pool.close]
        return Router(self.rules, llm)

    async def _extract(self, text: str) -> list[Finding]:
        if self._router is None:
            self._router = await self._build()
        document_id = "eval:" + hashlib.sha256(text.encode()).hexdigest()[:16]
        return (await self._router.run(self.name, self.tenant, document_id, text)).findings

    def extract(self, text: str) -> list[Finding]:
        return self._loop.run_until_complete(self._extract(text))

    def prefilter(self, text: str) -> bool:
        """Whether the hybrid route sends this note to the model (scored apart by ``vigil eval``)."""
        from services.inference.prefilter import forwards

        return forwards(self.rules.engine.extract(text))

    def close(self) -> None:
        if self._loop.is_closed():
            return
        for close in self._closers:
            self._loop.run_until_complete(close())
        self._loop.close()
