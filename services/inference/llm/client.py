"""Calls to an OpenAI-compatible chat completions endpoint, with our own retry policy.

The ``openai`` client's built-in retries are off (``max_retries=0``) so the policy is ours and
visible: retry 429 and 5xx and timeouts/connection errors, honouring Retry-After.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass


from services.core.errors import RetryableError, from_http_status
from services.core.logging import get_logger
from services.inference.llm.config import LlmConfig

log = get_logger("vigil.inference.llm")

#: Attempts per model call, first included: 1 + 3 retries.
MAX_ATTEMPTS = 4
#: Exponential backoff without Retry-After: 0.5 s, 1 s, 2 s -> at most 3.5 s of waiting per call.
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 8.0
#: A Retry-After longer than this is not slept on: the call fails as retryable with that delay,
#: and the caller (the stage runtime) reschedules the note instead of holding a worker.
MAX_RETRY_AFTER_SECONDS = 30.0


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = MAX_ATTEMPTS
    backoff_base: float = BACKOFF_BASE_SECONDS
    backoff_max: float = BACKOFF_MAX_SECONDS
    max_retry_after: float = MAX_RETRY_AFTER_SECONDS

    def backoff(self, attempt: int) -> float:
        return min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1))


@dataclass(frozen=True)
class Completion:
    content: str
    prompt_tokens: int
    completion_tokens: int
    attempts: int


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str       # JSON text, as the model wrote it


@dataclass(frozen=True)
class ChatTurn:
    content: str
    tool_calls: tuple[ToolCall, ...]
    prompt_tokens: int
    completion_tokens: int
    attempts: int


class ChatClient:
    """One ``AsyncOpenAI`` client per tenant endpoint (its own connection pool)."""

    def __init__(self, config: LlmConfig, policy: RetryPolicy = RetryPolicy()):
        import openai  # here, not at module import: a rules-only process never loads the SDK (~0.9 s of CPU)

        self._errors = openai
        self.config = config
        self.policy = policy
        self._client = openai.AsyncOpenAI(base_url=config.base_url, api_key=config.api_key, max_retries=0,
                                          timeout=config.timeout_seconds)

    async def close(self) -> None:
        await self._client.close()

    async def complete(self, messages: list[dict], response_format: dict) -> Completion:
        response, attempts = await self._create(messages=messages, response_format=response_format, temperature=0)
        choice = response.choices[0] if response.choices else None
        prompt_tokens, completion_tokens = _tokens(response)
        return Completion(content=(choice.message.content or "") if choice else "",
                          prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, attempts=attempts)

    async def chat(self, messages: list[dict], tools: list[dict]) -> ChatTurn:
        """One tool-calling turn: the model's message (text and/or tool calls) and its token counts."""
        kwargs = {"tools": tools} if tools else {}
        response, attempts = await self._create(messages=messages, **kwargs)
        message = response.choices[0].message if response.choices else None
        calls = tuple(ToolCall(c.id, c.function.name, c.function.arguments or "")
                      for c in (message.tool_calls or [] if message else []))
        prompt_tokens, completion_tokens = _tokens(response)
        return ChatTurn(content=(message.content or "") if message else "", tool_calls=calls,
                        prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, attempts=attempts)

    async def _create(self, **kwargs):
        """``chat.completions.create`` under the retry policy; returns (response, attempts)."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._client.chat.completions.create(model=self.config.model, **kwargs), attempt
            except self._errors.APIStatusError as exc:
                err = from_http_status(exc.status_code, f"LLM endpoint answered HTTP {exc.status_code}",
                                       exc.response.headers.get("retry-after"))
            except self._errors.APITimeoutError:
                err = RetryableError("LLM endpoint timed out", code="timeout")
            except self._errors.APIConnectionError:
                err = RetryableError("LLM endpoint unreachable", code="connection")
            if not isinstance(err, RetryableError):
                raise err
            delay = err.retry_after if err.retry_after is not None else self.policy.backoff(attempt)
            if attempt >= self.policy.max_attempts or delay > self.policy.max_retry_after:
                log.warning("llm.gave_up", tenant=self.config.tenant, attempts=attempt, error_code=err.code)
                raise RetryableError(str(err), code=err.code, retry_after=delay)
            log.info("llm.retry", tenant=self.config.tenant, attempt=attempt, error_code=err.code, delay=delay)
            await asyncio.sleep(delay)


def _tokens(response) -> tuple[int, int]:
    usage = response.usage
    return (usage.prompt_tokens, usage.completion_tokens) if usage else (0, 0)
