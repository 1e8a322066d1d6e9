"""Handler deadlines for the stage runtime: one watchdog per runner, not one timer per event.

``asyncio.timeout`` schedules and cancels a loop timer for every handler call, a few
microseconds each - a large share of a fast handler's cost. Here a call registers its task
and deadline in a dict; a watchdog wakes every ``tick`` and cancels the calls past their
deadline. The cancelled call then raises ``TimeoutError``, as under ``asyncio.timeout`` (only
for the cancellation the watchdog made: any other cancellation propagates untouched).
Deadlines are honoured within one tick: tick = timeout / 10, at most 1 s.

    deadlines = Deadlines(30.0)
    watchdog = asyncio.create_task(deadlines.watch())
    task = deadlines.enter()
    try:
        await handler(...)
    except asyncio.CancelledError:
        if deadlines.leave(task):
            raise TimeoutError(...) from None
        raise
    finally:
        deadlines.leave(task)
"""
from __future__ import annotations

import asyncio
import time

MAX_TICK_S = 1.0


class Deadlines:
    def __init__(self, timeout_s: float):
        self.timeout_s = timeout_s
        self.tick_s = min(MAX_TICK_S, timeout_s / 10)
        self._calls: dict[asyncio.Task, float] = {}
        self._expired: set[asyncio.Task] = set()

    def enter(self, task: asyncio.Task | None = None) -> asyncio.Task:
        """Start a call's clock. ``task`` (default: the current task, which a caller that knows
        it passes to save the lookup) is what the watchdog cancels on expiry."""
        if task is None:
            task = asyncio.current_task()
        self._calls[task] = time.perf_counter() + self.timeout_s
        return task

    def leave(self, task: asyncio.Task) -> bool:
        """End the call (idempotent); True when the watchdog cancelled it for its deadline."""
        self._calls.pop(task, None)
        if task in self._expired:
            self._expired.discard(task)
            task.uncancel()
            return True
        return False

    async def watch(self) -> None:
        """Run until cancelled: cancel every call past its deadline."""
        while True:
            await asyncio.sleep(self.tick_s)
            now = time.perf_counter()
            for task, deadline in list(self._calls.items()):
                if deadline <= now and task not in self._expired:
                    self._expired.add(task)
                    task.cancel()
