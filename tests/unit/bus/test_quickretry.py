"""Quick in-process retries: which errors are tried again, how often, how long apart (no servers)."""
from __future__ import annotations

import time

from services.core.bus.policy import RetryPolicy
from services.core.bus.quickretry import retry_quickly
from services.core.errors import RetryableError, ValidationError

POLICY = RetryPolicy(quick_attempts=3, quick_wait_initial_s=0.02, quick_wait_max_s=0.2)


def _calls(outcomes: list):
    """An ``attempt`` that replays ``outcomes`` (an exception to raise or a context to return)."""
    made: list[int] = []

    async def attempt(n: int):
        made.append(n)
        outcome = outcomes[len(made) - 1]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    return attempt, made


async def test_a_fatal_first_error_is_not_tried_again():
    attempt, made = _calls([])
    first = ValidationError("bad payload")
    assert await retry_quickly(POLICY, first, "ctx-1", attempt) == ("ctx-1", first, 1)
    assert made == []


async def test_a_transient_error_that_recovers_succeeds_on_a_later_call():
    attempt, made = _calls([RetryableError("503"), "ctx-3"])
    started = time.perf_counter()
    ctx, exc, attempts = await retry_quickly(POLICY, RetryableError("timeout"), "ctx-1", attempt)
    assert (ctx, exc, attempts) == ("ctx-3", None, 3) and made == [2, 3]
    assert time.perf_counter() - started >= 0.02 + 0.04 * 0.9  # waits 0.02 s, then 0.04 s (doubling)


async def test_a_persistent_transient_error_stops_after_the_quick_attempts():
    last = RetryableError("still down")
    attempt, made = _calls([RetryableError("down"), last])
    ctx, exc, attempts = await retry_quickly(POLICY, RetryableError("down"), "ctx-1", attempt)
    assert exc is last and attempts == POLICY.quick_attempts and made == [2, 3]


async def test_retry_after_is_honoured_and_a_long_one_leaves_it_to_the_retry_topics():
    attempt, made = _calls(["ctx-2"])
    started = time.perf_counter()
    assert await retry_quickly(POLICY, RetryableError("429", retry_after=0.15), "ctx-1", attempt) == ("ctx-2", None, 2)
    assert time.perf_counter() - started >= 0.15 * 0.9
    attempt, made = _calls([])
    long_wait = RetryableError("429", retry_after=POLICY.quick_wait_max_s + 1)
    assert await retry_quickly(POLICY, long_wait, "ctx-1", attempt) == ("ctx-1", long_wait, 1) and made == []


async def test_one_quick_attempt_means_no_retry():
    attempt, made = _calls([])
    first = RetryableError("timeout")
    policy = RetryPolicy(quick_attempts=1, quick_wait_initial_s=0.01, quick_wait_max_s=0.1)
    assert await retry_quickly(policy, first, "ctx-1", attempt) == ("ctx-1", first, 1) and made == []
