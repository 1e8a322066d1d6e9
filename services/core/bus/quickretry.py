"""Quick in-process retries of a handler call (tenacity), after its first call failed.

    ctx, exc, attempts = await retry_quickly(policy, first_error, ctx, attempt)

``attempt(n)`` makes the n-th call (n = 2, 3, ...) and returns its context; the result is the
context of the last call, its error (None when one succeeded) and the number of calls made,
the first included. Only retryable errors (``core/errors.classify``) are tried again, at most
``policy.quick_attempts`` calls in all, waiting ``quick_wait_initial_s`` doubling up to
``quick_wait_max_s``, or the error's Retry-After when it names one; a Retry-After longer than
``quick_wait_max_s`` ends the quick tries at once (the retry topics take over).
"""
from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

import tenacity

from services.core.bus.policy import RetryPolicy
from services.core.errors import classify


def _retry_after(exc: BaseException | None) -> float | None:
    return getattr(classify(exc), "retry_after", None)


async def retry_quickly(policy: RetryPolicy, first: Exception, ctx: Any,
                        attempt: Callable[[int], Awaitable[Any]]) -> tuple[Any, BaseException | None, int]:
    def wait(rs: tenacity.RetryCallState) -> float:  # attempt_number counts from the 2nd call
        after = _retry_after(rs.outcome.exception())
        return after if after is not None else min(policy.quick_wait_max_s,
                                                   policy.quick_wait_initial_s * 2 ** rs.attempt_number)

    def stop(rs: tenacity.RetryCallState) -> bool:
        return 1 + rs.attempt_number >= policy.quick_attempts or \
            (_retry_after(rs.outcome.exception()) or 0) > policy.quick_wait_max_s

    after = _retry_after(first)
    if not classify(first).retryable or policy.quick_attempts == 1 or (after or 0) > policy.quick_wait_max_s:
        return ctx, first, 1
    await asyncio.sleep(min(after or policy.quick_wait_initial_s, policy.quick_wait_max_s))
    count = 1
    retrying = tenacity.AsyncRetrying(stop=stop, wait=wait, reraise=True,
                                      retry=tenacity.retry_if_exception(lambda e: classify(e).retryable))
    try:
        async for call in retrying:
            with call:
                count += 1
                ctx = await attempt(count)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # classified by the caller; nothing is swallowed
        return ctx, exc, count
    return ctx, None, count
