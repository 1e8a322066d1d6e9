"""The `llm` engine: budget, cache, model call with one repair, quotes turned into checked findings."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Callable, Mapping

from jsonschema import Draft202012Validator

from services.core.crypto import Keyring
from services.core.logging import get_logger
from services.core.tenancy import Tenant
from services.core.tenantcache import TenantCache
from services.inference import metrics
from services.inference.llm import evidence, prompt
from services.inference.llm.cache import ResponseCache
from services.inference.llm.client import ChatClient, ChatTurn, Completion, RetryPolicy
from services.inference.llm.config import LlmConfig
from services.inference.llm.ledger import Ledger, Usage, seconds_until_next_day
from services.inference.result import BudgetExhausted, EngineOutput

log = get_logger("vigil.inference.llm")
_VALIDATOR = Draft202012Validator(prompt.RESPONSE_SCHEMA)


def parse_output(content: str) -> tuple[list[dict] | None, str]:
    """The findings of a model reply, or None and a description of the problem (never the content)."""
    try:
        data = json.loads(content)
    except ValueError as exc:
        return None, f"not JSON ({exc.msg} at position {exc.pos})"
    errors = sorted(_VALIDATOR.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        path = "/".join(str(p) for p in first.absolute_path) or "(root)"
        return None, f"does not match the schema ({first.validator} at {path})"
    return data["findings"], ""


@dataclass
class _Answer:
    findings: list[dict]
    valid: bool


class LlmEngine:
    name = "llm"

    def __init__(self, ledger: Ledger, redis_for: Callable[[str], object], keyring: Keyring, *,
                 policy: RetryPolicy = RetryPolicy(), env: Mapping[str, str] | None = None):
        self.ledger = ledger
        self.redis_for = redis_for
        self.keyring = keyring
        self.policy = policy
        self.env = os.environ if env is None else env
        self._clients: TenantCache[ChatClient] = TenantCache(name="llm")

    def config(self, tenant: Tenant, purpose: str = "extraction") -> LlmConfig:
        return LlmConfig.from_tenant(tenant, self.env, purpose)

    def _client(self, config: LlmConfig) -> ChatClient:
        ident = (config.base_url, config.model, config.api_key, config.timeout_seconds)
        return self._clients.get_now((config.purpose, config.tenant), lambda: ChatClient(config, self.policy),
                                     ident=ident)

    async def chat(self, tenant: Tenant, purpose: str, conversation_id: str, messages: list[dict],
                   tools: list[dict]) -> tuple[LlmConfig, ChatTurn]:
        """One tool-calling turn for an agent (``purpose``), within the tenant's daily budget and
        recorded in the cost ledger like every extraction call."""
        config = self.config(tenant, purpose)
        await self.check_budget(config)
        turn = await self._client(config).chat(messages, tools)
        cost = config.cost(turn.prompt_tokens, turn.completion_tokens)
        await self.ledger.record(Usage(config.tenant, conversation_id, config.model, prompt.messages_hash(messages),
                                       turn.prompt_tokens, turn.completion_tokens, cost, "ok", purpose))
        metrics.LLM_TOKENS.labels(config.tenant, "prompt").inc(turn.prompt_tokens)
        metrics.LLM_TOKENS.labels(config.tenant, "completion").inc(turn.completion_tokens)
        metrics.LLM_COST.labels(config.tenant).inc(cost)
        return config, turn

    async def close(self) -> None:
        await self._clients.close()

    async def check_budget(self, config: LlmConfig) -> None:
        if config.daily_budget_usd <= 0:
            return
        if await self.ledger.spent_today(config.tenant) >= config.daily_budget_usd:
            metrics.BUDGET_EXHAUSTED.labels(config.tenant, config.over_budget).inc()
            raise BudgetExhausted("daily LLM budget exhausted", retry_after=seconds_until_next_day())

    async def extract(self, tenant: Tenant, document_id: str, text: str) -> EngineOutput:
        config = self.config(tenant)
        await self.check_budget(config)
        prompt_hash = prompt.prompt_hash()
        cache = ResponseCache(self.redis_for(tenant.id), self.keyring)
        pieces = evidence.chunk(text)
        found, dropped, review = [], 0, False
        for number, piece in enumerate(pieces, start=1):
            messages = prompt.messages(piece.text, number, len(pieces))
            input_hash = prompt.input_hash(messages[-1]["content"])
            cached = await cache.get(tenant.id, config.model, prompt_hash, input_hash)
            if cached is not None:
                metrics.LLM_CACHE_HITS.labels(tenant.id).inc()
                await self.ledger.record(Usage(tenant.id, document_id, config.model, prompt_hash, 0, 0, 0.0,
                                               "cache_hit"))
                answer = _Answer(cached, True)
            else:
                answer = await self._ask(config, messages, document_id, prompt_hash)
                if answer.valid:
                    await cache.put(tenant.id, config.model, prompt_hash, input_hash, answer.findings)
            review = review or not answer.valid
            located = evidence.locate(answer.findings, piece)
            found.extend(located.findings)
            dropped += located.dropped
        return EngineOutput(findings=evidence.merge(found), engine="llm", engine_version=config.model,
                            prompt_hash=prompt_hash, review_required=review or dropped > 0, dropped=dropped)

    async def _ask(self, config: LlmConfig, messages: list[dict], document_id: str, prompt_hash: str) -> _Answer:
        client = self._client(config)
        first = await client.complete(messages, prompt.response_format())
        calls: list[Completion] = [first]
        findings, problem = parse_output(first.content)
        outcome = "ok"
        if findings is None:
            log.info("llm.repair", tenant=config.tenant, problem=problem)
            second = await client.complete(prompt.repair_messages(messages, first.content, problem),
                                           prompt.response_format())
            calls.append(second)
            findings, problem = parse_output(second.content)
            outcome = "repaired" if findings is not None else "invalid"
        prompt_tokens = sum(c.prompt_tokens for c in calls)
        completion_tokens = sum(c.completion_tokens for c in calls)
        cost = config.cost(prompt_tokens, completion_tokens)
        await self.ledger.record(Usage(config.tenant, document_id, config.model, prompt_hash, prompt_tokens,
                                       completion_tokens, cost, outcome))
        metrics.LLM_TOKENS.labels(config.tenant, "prompt").inc(prompt_tokens)
        metrics.LLM_TOKENS.labels(config.tenant, "completion").inc(completion_tokens)
        metrics.LLM_COST.labels(config.tenant).inc(cost)
        if findings is None:
            metrics.LLM_INVALID_OUTPUT.labels(config.tenant).inc()
            log.warning("llm.invalid_output", tenant=config.tenant, problem=problem)
            return _Answer([], False)
        return _Answer(findings, True)
