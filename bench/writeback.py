"""Benchmark: writeback's verified, idempotent write vs the raw transaction it sends, same run.

Against the EHR sandbox in its own process (`vigil ehr serve`, SMART-authenticated):
- writer: ``Writer.write`` per decision (search by decision id, search the episode, the
  transaction, a vread of every written resource and of the Task) - what the stage does;
- raw: the same ``create_bundle`` transaction POSTed once, nothing searched or read back;
- replay: ``Writer.write`` of decisions already written (found by identifier, read back).
N decisions, C in flight, each on its own patient and episode. Prints rates and the ratios
writer / raw and replay / raw (the price of exactly-once plus read-back verification).

    python -m bench.writeback [N] [C]
"""
from __future__ import annotations

import asyncio
import os
import sys
import uuid

from bench.ehr import _run, sandbox_client
from services.core.config import Settings
from services.writeback import resources as R
from services.writeback.config import WRITE_SCOPE
from services.writeback.writer import Writer

DEFAULT_N = 200
DEFAULT_CONCURRENCY = 8
QUOTE = "grade 2 immune-mediated colitis"


def decision(run: str, i: int) -> dict:
    return {"decisionId": f"{run}-d{i}", "patient": f"{run}-p{i}", "category": "colitis", "grade": 2,
            "kind": "routine-task", "owner": "Practitioner/onc-1", "document": {"id": f"{run}-doc{i}", "versionId": "1"},
            "finding": {"start": 12, "end": 12 + len(QUOTE), "quote": QUOTE, "grade": 2, "category": "colitis"},
            "engineVersion": "rules-bench", "mode": "active", "episodeKey": f"{run}-ep{i}", "episodeAction": "open",
            "write": True}


async def allow() -> None:
    return None


async def main(n: int, concurrency: int) -> None:
    Settings.from_env()  # fail fast on bad settings
    async with sandbox_client("bench-writeback", WRITE_SCOPE.split(), concurrency) as (client, _):
        writer = Writer(client)
        await writer.write(decision("warm", 0), allow)  # token, connections, the Device
        verified, raw = uuid.uuid4().hex[:6], uuid.uuid4().hex[:6]

        async def write(i: int) -> None:
            await writer.write(decision(verified, i), allow)

        async def post(i: int) -> None:
            await client.transaction(R.create_bundle(decision(raw, i)))

        writes = await _run(n, concurrency, write)
        posts = await _run(n, concurrency, post)
        replays = await _run(n, concurrency, write)
    print(f"writeback Writer vs raw transaction, N={n}, concurrency={concurrency} "
          f"(host load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    print(f"  decisions/s  verified write {writes:7.1f}   raw transaction {posts:7.1f}   ratio {writes / posts:.3f}")
    print(f"  decisions/s  replay (no-op) {replays:7.1f}   raw transaction {posts:7.1f}   ratio {replays / posts:.3f}")


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]]
    asyncio.run(main(*(args + [DEFAULT_N, DEFAULT_CONCURRENCY][len(args):])))
