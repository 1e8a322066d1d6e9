"""A token bucket: at most ``burst + rate x t`` acquisitions in any window of t seconds.

One bucket per tenant, awaited before every EHR request the poller sends. Waiters are served
in arrival order (one lock), so a tenant's concurrent workers share its budget fairly; tenants
never share a bucket, so one tenant's wait is never another's. ``hold`` empties the bucket for
a while (the EHR answered 429 with Retry-After).
"""
from __future__ import annotations

import asyncio
import time
from typing import Callable


class TokenBucket:
    def __init__(self, rate_per_s: float, burst: int, *, clock: Callable[[], float] = time.monotonic):
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be > 0 and burst >= 1")
        self.rate, self.capacity, self._clock = float(rate_per_s), float(burst), clock
        self._tokens, self._updated, self._held_until = float(burst), clock(), 0.0
        self._lock = asyncio.Lock()

    def _refill(self, now: float) -> None:
        self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = self._clock()
                if now < self._held_until:
                    await asyncio.sleep(self._held_until - now)
                    continue
                self._refill(now)
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    return
                await asyncio.sleep((1.0 - self._tokens) / self.rate)

    def hold(self, seconds: float) -> None:
        """No token for ``seconds`` (from now), and the bucket starts empty afterwards."""
        now = self._clock()
        self._held_until = max(self._held_until, now + max(0.0, seconds))
        self._tokens, self._updated = 0.0, self._held_until
