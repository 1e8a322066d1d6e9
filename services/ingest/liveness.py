"""Ingest's liveness: ``/healthz`` answers 200 only while the parts that make progress do.

Each part registers a check that returns None (fine) or a short, PHI-free reason:

- ``mllp``: the listener still accepts connections;
- ``watchdog``: its task runs and finished a round within ``STALL_ROUNDS`` intervals;
- ``polling``: every tenant's poller task runs;
- ``publishing``: the broker has not refused every publish for ``PUBLISH_STALL_S`` seconds.

A broker or EHR outage alone is not a reason to restart ingest (it answers AE and retries), so
publishing counts only once it has failed for minutes without one success; a crashed task or a
closed listener is, and Kubernetes' liveness probe restarts the pod.
"""
from __future__ import annotations

import time
from typing import Callable

#: A watchdog round may take this many intervals (plus the slack) before ingest counts as stalled.
STALL_ROUNDS = 3
STALL_SLACK_S = 30.0
#: Seconds of nothing but failed publishes before ingest counts as stuck.
PUBLISH_STALL_S = 120.0

Check = Callable[[], "str | None"]


class Liveness:
    def __init__(self) -> None:
        self._checks: dict[str, Check] = {}

    def add(self, name: str, check: Check) -> None:
        self._checks[name] = check

    def problems(self) -> dict[str, str]:
        found = {}
        for name, check in self._checks.items():
            try:
                problem = check()
            except Exception as exc:  # a check that cannot tell is a problem, named without detail
                problem = f"check failed ({type(exc).__name__})"
            if problem:
                found[name] = problem
        return found

    @property
    def parts(self) -> list[str]:
        return list(self._checks)


class PublishHealth:
    """Success and failure of publishes, as ``Publishers`` sees them."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.failing_since: float | None = None

    def succeeded(self) -> None:
        self.failing_since = None

    def failed(self) -> None:
        if self.failing_since is None:
            self.failing_since = self.clock()

    def problem(self) -> str | None:
        if self.failing_since is None:
            return None
        failing = self.clock() - self.failing_since
        return f"every publish failed for {failing:.0f} s" if failing >= PUBLISH_STALL_S else None


def task_problem(task, name: str) -> str | None:
    if task is None:
        return f"{name} not started"
    if task.done():
        return f"{name} stopped" if task.cancelled() or task.exception() is None else f"{name} crashed"
    return None
