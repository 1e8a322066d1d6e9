"""Which engine answers a tenant's note: rules | llm | hybrid, with the over-budget policy.

- ``rules``: the offline rules engine.
- ``llm``: the tenant's model. Over the daily budget: ``llm_over_budget = "rules"`` answers with
  the rules engine (the response says engine=rules), ``"defer"`` raises the BudgetExhausted
  (RetryableError with retry_after = time to the next UTC day).
- ``hybrid``: rules first; only a note the prefilter forwards (the rules engine reports an alert
  on it, see ``services/inference/prefilter.py``) goes to the model. Over budget it follows the
  same policy as ``llm``.
"""
from __future__ import annotations

import asyncio
from typing import Callable, Protocol, Sequence

from services.core.errors import ValidationError
from services.core.tenancy import Tenant
from services.inference import prefilter
from services.inference.findings import Finding
from services.inference.llm.config import ENGINE_NAMES, tenant_engine
from services.inference.result import BudgetExhausted, EngineOutput
from services.inference.rules.engine import RulesEngine
from services.inference.rules.workers import RulesPool


class Engine(Protocol):
    async def extract(self, tenant: Tenant, document_id: str, text: str) -> EngineOutput: ...


class RulesAdapter:
    """The rules engine (synchronous, CPU-bound) run off the event loop, answering EngineOutput:
    on a thread, or in a pool of worker processes (``pool``, ``rules/workers.py``) when the server
    is to use more than one core."""

    def __init__(self, engine: RulesEngine | None = None, pool: RulesPool | None = None):
        self.engine = engine or RulesEngine()
        self.pool = pool

    async def extract(self, tenant: Tenant, document_id: str, text: str) -> EngineOutput:
        if self.pool is not None:
            findings = await self.pool.extract(text)
        else:
            findings = await asyncio.to_thread(self.engine.extract, text)
        return EngineOutput(findings, "rules", self.engine.version)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()


class Router:
    def __init__(self, rules: Engine, llm: Engine,
                 forwards: Callable[[Sequence[Finding]], bool] = prefilter.forwards):
        self.rules = rules
        self.llm = llm
        self.forwards = forwards
        #: The one table of engines this service answers with.
        self.routes: dict[str, Callable] = {"rules": self._rules, "llm": self._llm, "hybrid": self._hybrid}
        if tuple(self.routes) != ENGINE_NAMES:
            raise RuntimeError("the routing table and ENGINE_NAMES disagree")

    def engine_for(self, tenant: Tenant, override: str) -> str:
        if override and override not in self.routes:
            raise ValidationError(f"engine must be one of {', '.join(self.routes)}", code="bad_engine")
        return override or tenant_engine(tenant)

    async def run(self, engine: str, tenant: Tenant, document_id: str, text: str) -> EngineOutput:
        return await self.routes[engine](tenant, document_id, text)

    async def _rules(self, tenant: Tenant, document_id: str, text: str) -> EngineOutput:
        return await self.rules.extract(tenant, document_id, text)

    async def _llm(self, tenant: Tenant, document_id: str, text: str) -> EngineOutput:
        try:
            return await self.llm.extract(tenant, document_id, text)
        except BudgetExhausted:
            if self.llm.config(tenant).over_budget != "rules":
                raise
        fallback = await self.rules.extract(tenant, document_id, text)
        return _with_note(fallback, "budget_fallback")

    async def _hybrid(self, tenant: Tenant, document_id: str, text: str) -> EngineOutput:
        first = await self.rules.extract(tenant, document_id, text)
        if not self.forwards(first.findings):
            return EngineOutput(first.findings, "hybrid", f"rules {first.engine_version}", "",
                                first.review_required, first.dropped, (*first.notes, "no_candidates"))
        answer = await self._llm(tenant, document_id, text)
        if "budget_fallback" in answer.notes:
            return EngineOutput(answer.findings, "hybrid", f"rules {first.engine_version}", "",
                                answer.review_required, answer.dropped, answer.notes)
        return EngineOutput(answer.findings, "hybrid", f"rules {first.engine_version}; llm {answer.engine_version}",
                            answer.prompt_hash, answer.review_required, answer.dropped, answer.notes)


def _with_note(output: EngineOutput, note: str) -> EngineOutput:
    return EngineOutput(output.findings, output.engine, output.engine_version, output.prompt_hash,
                        output.review_required, output.dropped, (*output.notes, note))
