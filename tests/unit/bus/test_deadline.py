"""Handler deadlines: the watchdog turns an overdue call into TimeoutError and nothing else."""
from __future__ import annotations

import asyncio

import pytest

from services.core.bus.deadline import Deadlines


async def _guarded(deadlines: Deadlines, work) -> str:
    """The runtime's pattern around a handler call."""
    task = deadlines.enter()
    try:
        await work()
    except asyncio.CancelledError:
        if deadlines.leave(task):
            raise TimeoutError("deadline") from None
        raise
    finally:
        deadlines.leave(task)
    return "done"


@pytest.fixture
async def deadlines():
    d = Deadlines(0.2)
    watchdog = asyncio.create_task(d.watch())
    yield d
    watchdog.cancel()


async def test_an_overdue_call_raises_timeout_and_leaves_its_task_uncancelled(deadlines):
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError):
        await _guarded(deadlines, lambda: asyncio.sleep(5))
    assert 0.2 <= loop.time() - started < 0.6  # within one tick (0.02 s) of the deadline, plus slack
    assert asyncio.current_task().cancelling() == 0
    assert await _guarded(deadlines, lambda: asyncio.sleep(0.01)) == "done"  # the next call is unaffected


async def test_a_call_within_its_deadline_is_left_alone(deadlines):
    assert await _guarded(deadlines, lambda: asyncio.sleep(0.1)) == "done"
    await asyncio.sleep(0.3)  # past the first call's deadline: the watchdog has nothing to cancel
    assert asyncio.current_task().cancelling() == 0


async def test_a_cancellation_from_elsewhere_propagates(deadlines):
    task = asyncio.create_task(_guarded(deadlines, lambda: asyncio.sleep(5)))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_concurrent_calls_time_out_independently(deadlines):
    results = await asyncio.gather(_guarded(deadlines, lambda: asyncio.sleep(5)),
                                   _guarded(deadlines, lambda: asyncio.sleep(0.05)), return_exceptions=True)
    assert isinstance(results[0], TimeoutError) and results[1] == "done"


def test_tick_is_a_tenth_of_the_timeout_and_at_most_a_second():
    assert Deadlines(0.5).tick_s == pytest.approx(0.05)
    assert Deadlines(30.0).tick_s == 1.0
