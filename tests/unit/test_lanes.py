"""The batch lane's settings: ``--lane``, the pacer and ``VIGIL_BATCH_MAX_RATE``."""
from __future__ import annotations

import pytest


async def test_the_batch_pacer_spaces_starts_and_the_rate_setting_is_checked():
    import asyncio

    from services.core.config import ConfigError
    from services.core.lanes import Pacer, from_argv, max_rate

    pacer = Pacer(50.0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.gather(*(pacer.wait() for _ in range(6)))
    assert loop.time() - started >= 5 / 50.0 * 0.9  # six starts, 20 ms apart
    assert max_rate({}) == 0.0 and max_rate({"VIGIL_BATCH_MAX_RATE": "7.5"}) == 7.5
    with pytest.raises(ConfigError, match="VIGIL_BATCH_MAX_RATE"):
        max_rate({"VIGIL_BATCH_MAX_RATE": "fast"})
    assert from_argv(["--lane", "batch"]).events == "batch-events" and from_argv([]).events == "ehr-events"
