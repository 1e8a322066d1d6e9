"""A stage process for the crash test: each event inserts one row (guarded by ctx.claim) and emits a finding.

    python stage_proc.py TENANT TABLE
Runs until SIGTERM (graceful) or SIGKILL.
"""
from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository root

from services.core.bus import StageSpec, run_stage  # noqa: E402
from services.core.config import Settings  # noqa: E402
from services.core.db import create_pool  # noqa: E402

from tests.integration.bus.conftest import FAST_RETRY, FAST_TUNING, findings_for  # noqa: E402

HANDLER_DELAY_S = 0.003


async def main(tenant: str, table: str) -> None:
    settings = Settings.from_env()
    pool = await create_pool(settings, min_size=1, max_size=4)

    async def handler(event, ctx):
        await asyncio.sleep(HANDLER_DELAY_S)
        async with pool.acquire() as conn, conn.transaction():
            if await ctx.claim(conn):
                await conn.execute(f"INSERT INTO {table} (event_id) VALUES ($1)", event.id)  # plain insert: a repeat fails
        ctx.emit("findings", findings_for(event, ctx))

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    spec = StageSpec(name="crashy", input_stream="ehr-events", handler=handler, retry=FAST_RETRY, tuning=FAST_TUNING)
    print("ready", flush=True)
    await run_stage(settings, tenant, spec, stop)
    await pool.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
