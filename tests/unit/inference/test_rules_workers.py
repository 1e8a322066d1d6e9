"""Rules-engine worker processes: the same findings as the engine in-process, a dead worker is
replaced (idle, or with a note in hand), a cancelled call's answer goes to no other caller, and
VIGIL_RULES_WORKERS is checked."""
from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import pytest

from services.core.config import ConfigError
from services.inference.routing import RulesAdapter
from services.inference.rules.engine import RulesEngine
from services.inference.rules.workers import RulesPool, workers_from_env

NOTES = Path(__file__).resolve().parents[2] / "data" / "gold_dev.jsonl"


def _texts(n: int) -> list[str]:
    return [json.loads(line)["text"] for line in NOTES.read_text().splitlines() if line.strip()][:n]


def test_pool_answers_what_the_engine_answers_and_survives_a_dead_worker():
    texts = _texts(12)
    engine = RulesEngine()
    pool = RulesPool(2)
    try:
        pool.warm()

        async def run() -> list:
            return await asyncio.gather(*(pool.extract(t) for t in texts))

        assert asyncio.run(run()) == [engine.extract(t) for t in texts]
        for pid in pool.pids:  # the test kills a worker on purpose
            os.kill(pid, signal.SIGKILL)
            break
        # the next note finds the worker dead: a new worker takes its place and runs it
        assert asyncio.run(pool.extract(texts[0])) == engine.extract(texts[0])
        assert asyncio.run(pool.extract(texts[1])) == engine.extract(texts[1])
    finally:
        pool.close()


def test_a_worker_killed_with_a_note_in_hand_and_a_cancelled_caller_lose_and_mix_up_nothing():
    texts = _texts(24)
    engine = RulesEngine()
    expected = [engine.extract(t) for t in texts]
    pool = RulesPool(2)
    try:
        pool.warm()

        async def killed_mid_run() -> list:
            calls = [asyncio.ensure_future(pool.extract(t)) for t in texts]
            await asyncio.sleep(0.02)  # both workers hold a note
            os.kill(pool.pids[0], signal.SIGKILL)
            return await asyncio.gather(*calls)

        assert asyncio.run(killed_mid_run()) == expected

        async def cancelled() -> list:
            first = asyncio.ensure_future(pool.extract(texts[0]))
            await asyncio.sleep(0.001)
            first.cancel()  # its answer still comes back on that worker's pipe: read, not handed to the next
            return await asyncio.gather(*(pool.extract(t) for t in texts[1:]))

        assert asyncio.run(cancelled()) == expected[1:]
    finally:
        pool.close()


def test_adapter_uses_the_pool():
    pool = RulesPool(2)
    try:
        adapter = RulesAdapter(pool=pool)
        output = asyncio.run(adapter.extract(None, "doc", _texts(1)[0]))
        assert output.engine == "rules" and output.findings == RulesEngine().extract(_texts(1)[0])
        assert output.engine_version == RulesEngine.version
    finally:
        adapter.close()


@pytest.mark.parametrize("raw,expected", [("", 1), ("1", 1), ("3", 3), ("auto", max(1, min(64, os.cpu_count() or 1)))])
def test_workers_from_env(raw, expected):
    assert workers_from_env({"VIGIL_RULES_WORKERS": raw}) == expected


@pytest.mark.parametrize("raw", ["0", "-1", "two", "65", "1.5"])
def test_bad_workers_setting_is_a_clear_error(raw):
    with pytest.raises(ConfigError, match="VIGIL_RULES_WORKERS"):
        workers_from_env({"VIGIL_RULES_WORKERS": raw})
