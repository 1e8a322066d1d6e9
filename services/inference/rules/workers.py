"""Rules-engine worker processes: the engine is pure Python (one core per process, whatever the
threads), so a server that must use several cores runs it in a pool of processes.

``VIGIL_RULES_WORKERS``: how many (``auto`` = the machine's cores; default 1 = no pool, the engine
runs on a thread of the server's own process). Workers are started with ``spawn`` (the server
runs gRPC and asyncio threads that must not be forked), each builds its pipeline once, and they
inherit the server's CPU priority (the batch lane's servers run niced). A worker that dies takes
its note with it: the pool is replaced and the note is run again once on the new pool.
"""
from __future__ import annotations

import asyncio
import gc
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Mapping

from services.core.config import ConfigError
from services.inference.findings import Finding

VARIABLE = "VIGIL_RULES_WORKERS"
MAX_WORKERS = 64

_ENGINE = None


def workers_from_env(env: Mapping[str, str]) -> int:
    """``VIGIL_RULES_WORKERS``: 1 (default) to 64, or ``auto`` (the cores of this machine)."""
    raw = (env.get(VARIABLE) or "").strip().lower()
    if not raw:
        return 1
    if raw == "auto":
        return max(1, min(MAX_WORKERS, os.cpu_count() or 1))
    try:
        count = int(raw)
    except ValueError:
        count = 0
    if not 1 <= count <= MAX_WORKERS:
        raise ConfigError(f"{VARIABLE}={raw!r}: expected a number of worker processes, 1 to {MAX_WORKERS}, or auto")
    return count


def _start_worker() -> None:
    global _ENGINE
    from services.inference.rules.engine import RulesEngine
    from services.inference.rules.pipeline import get_pipeline

    _ENGINE = RulesEngine()
    get_pipeline()  # built before the first note, not during it
    gc.freeze()  # the pipeline's many long-lived objects: out of every later collection's walk


def _extract(text: str) -> list[Finding]:
    return _ENGINE.extract(text)


class RulesPool:
    """``await pool.extract(text)``: the engine's findings, computed in one of ``workers`` processes."""

    def __init__(self, workers: int):
        self.workers = workers
        self._executor = self._new()

    def _new(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_start_worker)

    def warm(self) -> None:
        """Start every worker now (each builds its pipeline) instead of on the first notes."""
        for future in [self._executor.submit(_extract, "") for _ in range(self.workers)]:
            future.result()

    async def extract(self, text: str) -> list[Finding]:
        loop = asyncio.get_running_loop()
        executor = self._executor
        try:
            return await loop.run_in_executor(executor, _extract, text)
        except BrokenProcessPool:
            if self._executor is executor:  # the first caller to see it replaces the pool
                self._executor = self._new()
                executor.shutdown(wait=False, cancel_futures=True)
            return await loop.run_in_executor(self._executor, _extract, text)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
