"""Lanes: the real-time lane and the batch lane travel on separate topics and consumer groups.

A backfill (a batch run over last year's notes) must never delay a real-time note. Each lane has
its own streams and its own stage instances (``python -m services.extraction.app --lane batch``):
the batch stages are other consumer groups (``vigil.<t>.extraction-batch``) on other topics, so a
backlog of batch events never sits in front of a real-time event in any partition, and a batch
stage process can be given fewer resources (``BATCH_NICE``) than the real-time one.

| lane | notes | findings | decisions | stage names |
|---|---|---|---|---|
| realtime | ``ehr-events`` | ``findings`` | ``actions`` (writeback reads it) | ``extraction``, ``triage`` |
| batch | ``batch-events`` | ``batch-findings`` | ``batch-decisions`` (nobody writes it to the EHR) | ``extraction-batch``, ``triage-batch`` |
"""
from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import Mapping, Sequence

from services.core import contracts


@dataclass(frozen=True)
class Lane:
    name: str
    events: str
    findings: str
    decisions: str
    suffix: str

    def stage(self, base: str) -> str:
        """The stage (and consumer group) name of ``base`` in this lane."""
        return base + self.suffix

    @property
    def batch(self) -> bool:
        return self.name == BATCH


REALTIME = "realtime"
BATCH = "batch"
#: lane name -> its streams. Every lane is listed here.
LANES: dict[str, Lane] = {
    REALTIME: Lane(REALTIME, contracts.EHR_EVENTS, contracts.FINDINGS, contracts.ACTIONS, ""),
    BATCH: Lane(BATCH, contracts.BATCH_EVENTS, contracts.BATCH_FINDINGS, contracts.BATCH_DECISIONS, "-batch"),
}
#: A batch-lane stage process lowers its CPU priority by this much (``os.nice``; 19 is the lowest
#: priority): on a shared host the real-time stages get the processor first whenever both have work.
BATCH_NICE = 19
#: Key lanes per input partition of the batch lane's extraction (``ConsumerTuning.key_lanes``): a
#: backfill's notes of one partition go through tools and inference this many at a time, so the
#: inference server's worker processes are not left waiting on one note per partition.
BATCH_KEY_LANES = 4
#: ``VIGIL_BATCH_MAX_RATE``: notes per second one batch extraction process starts at most (0 or
#: unset: no limit). The CPU budget of a backfill where the real-time lane shares the processors.
RATE_VARIABLE = "VIGIL_BATCH_MAX_RATE"


class LaneError(ValueError):
    pass


def lane(name: str) -> Lane:
    try:
        return LANES[name]
    except KeyError:
        raise LaneError(f"unknown lane {name!r}: expected one of {', '.join(LANES)}") from None


def from_argv(argv: Sequence[str]) -> Lane:
    """``--lane NAME`` (or ``--lane=NAME``) from a stage's command line; default the real-time lane."""
    args = list(argv)
    for i, arg in enumerate(args):
        if arg == "--lane":
            if i + 1 >= len(args):
                raise LaneError("--lane needs a value: " + " | ".join(LANES))
            return lane(args[i + 1])
        if arg.startswith("--lane="):
            return lane(arg.split("=", 1)[1])
    return LANES[REALTIME]


def deprioritise(chosen: Lane) -> None:
    """Lower this process's CPU priority when it runs the batch lane."""
    if chosen.batch:
        try:
            os.nice(BATCH_NICE)
        except OSError:  # not permitted here: the lane still runs, only without the lower priority
            pass


def max_rate(env: Mapping[str, str]) -> float:
    """``VIGIL_BATCH_MAX_RATE`` (notes per second, 0 = no limit)."""
    from services.core.config import ConfigError

    raw = (env.get(RATE_VARIABLE) or "").strip()
    if not raw:
        return 0.0
    try:
        rate = float(raw)
    except ValueError:
        rate = -1.0
    if not 0 <= rate <= 100_000:
        raise ConfigError(f"{RATE_VARIABLE}={raw!r}: expected notes per second, 0 (no limit) to 100000")
    return rate


class Pacer:
    """At most ``rate`` starts per second across the tasks of one process (0: no limit); a start
    waits for its slot (slots are 1 / rate apart, none saved up while idle)."""

    def __init__(self, rate: float = 0.0):
        self.rate = rate
        self._next = 0.0

    async def wait(self) -> None:
        if self.rate <= 0:
            return
        now = asyncio.get_running_loop().time()
        slot = max(now, self._next)
        self._next = slot + 1.0 / self.rate
        if slot > now:
            await asyncio.sleep(slot - now)
