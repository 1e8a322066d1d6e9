"""Rules-engine worker processes: the engine is pure Python (one core per process, whatever the
threads), so a server that must use several cores runs it in a pool of processes.

``VIGIL_RULES_WORKERS``: how many (``auto`` = the machine's cores; default 1 = no pool, the engine
runs on a thread of the server's own process). Workers are started with ``spawn`` (the server
runs gRPC and asyncio threads that must not be forked), each builds its pipeline once, and they
inherit the server's CPU priority (the batch lane's servers run niced). A worker that dies takes
its note with it: a new worker takes its place and the note is run again once.
"""
from __future__ import annotations

import asyncio
import collections
import gc
import multiprocessing
import os
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


def _serve(conn) -> None:
    """A worker's loop: a note's text in, ``("ok", findings)`` or ``("error", exception)`` out; None
    or a closed pipe ends it."""
    _start_worker()
    while True:
        try:
            text = conn.recv()
        except (EOFError, OSError):
            return
        if text is None:
            return
        try:
            answer = ("ok", _ENGINE.extract(text))
        except Exception as exc:  # the engine's own failure, for the caller (no note text in it)
            answer = ("error", RuntimeError(f"rules engine failed: {type(exc).__name__}"))
        conn.send(answer)


class WorkerDied(RuntimeError):
    """A worker process ended while it held a note."""


class _Worker:
    def __init__(self, context):
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child,), daemon=True, name="vigil-rules")
        self.process.start()
        child.close()


class RulesPool:
    """``await pool.extract(text)``: the engine's findings, computed in one of ``workers`` processes.

    Each worker has its own pipe; a note goes to an idle worker (or waits for one, first come first
    served) and its answer is read on the event loop when the pipe turns readable - no threads
    between the server and its workers (``concurrent.futures``' process pool ran two in the server,
    and the server's CPU per note fell by about a quarter without them)."""

    def __init__(self, workers: int):
        self.workers = workers
        self._context = multiprocessing.get_context("spawn")
        self._idle: list[_Worker] = [_Worker(self._context) for _ in range(workers)]
        self._all: list[_Worker] = list(self._idle)
        self._waiting: collections.deque[asyncio.Future] = collections.deque()

    @property
    def pids(self) -> list[int]:
        return [w.process.pid for w in self._all]

    def warm(self) -> None:
        """Wait until every worker has built its pipeline (an empty note through each)."""
        for worker in list(self._idle):
            worker.conn.send("")
            worker.conn.recv()

    async def extract(self, text: str) -> list[Finding]:
        try:
            return await self._run(text)
        except WorkerDied:  # the note is run again, once, on the worker that replaced the dead one
            return await self._run(text)

    async def _run(self, text: str) -> list[Finding]:
        worker = await self._acquire()
        loop = asyncio.get_running_loop()
        answer = loop.create_future()
        fd = worker.conn.fileno()

        def readable() -> None:
            loop.remove_reader(fd)
            try:
                message = worker.conn.recv()
            except (EOFError, OSError):
                self._release(self._replace(worker))
                if not answer.done():
                    answer.set_exception(WorkerDied("a rules worker died"))
                return
            self._release(worker)  # here, not after the await: a cancelled caller's answer is read too
            if not answer.done():
                answer.set_result(message)

        try:
            worker.conn.send(text)
        except (BrokenPipeError, EOFError, OSError):
            self._release(self._replace(worker))
            raise WorkerDied("a rules worker died") from None
        loop.add_reader(fd, readable)
        kind, value = await answer
        if kind == "error":
            raise value
        return value

    async def _acquire(self) -> _Worker:
        if self._idle:
            return self._idle.pop()
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        return await waiter

    def _release(self, worker: _Worker) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(worker)
                return
        self._idle.append(worker)

    def _replace(self, dead: _Worker) -> _Worker:
        dead.conn.close()
        dead.process.join(timeout=1)
        fresh = _Worker(self._context)
        self._all = [fresh if w is dead else w for w in self._all]
        return fresh

    def close(self) -> None:
        for worker in self._all:
            try:
                worker.conn.send(None)
            except OSError:
                pass
        for worker in self._all:
            worker.process.join(timeout=5)
            if worker.process.is_alive():
                worker.process.terminate()
                worker.process.join(timeout=5)
            worker.conn.close()
