"""Ingest's /healthz follows progress: a stopped listener, a crashed or stalled watchdog, a dead
poller or minutes of failed publishes make it 503 naming the part; recovery makes it 200 again."""
from __future__ import annotations

import asyncio

from starlette.testclient import TestClient

from services.core.secrets import SecretSettings
from services.core.tenancy import Registry
from services.ingest import liveness
from services.ingest.liveness import Liveness, PublishHealth, task_problem
from services.ingest.receiver.app import ReceiverContext, create_app


def test_publishing_counts_only_after_minutes_of_nothing_but_failures():
    now = [1000.0]
    health = PublishHealth(clock=lambda: now[0])
    assert health.problem() is None
    health.failed()
    now[0] += liveness.PUBLISH_STALL_S - 1
    health.failed()
    assert health.problem() is None                      # an outage shorter than the limit
    now[0] += 2
    assert "every publish failed" in health.problem()
    health.succeeded()
    assert health.problem() is None


def test_a_task_that_stopped_or_crashed_is_named():
    async def run():
        async def boom():
            raise RuntimeError("x")

        crashed = asyncio.create_task(boom())
        running = asyncio.create_task(asyncio.sleep(10))
        await asyncio.sleep(0)
        await asyncio.gather(crashed, return_exceptions=True)
        found = (task_problem(crashed, "watchdog"), task_problem(running, "watchdog"), task_problem(None, "watchdog"))
        running.cancel()
        return found

    assert asyncio.run(run()) == ("watchdog crashed", None, "watchdog not started")


def test_healthz_answers_503_naming_the_part_then_200_again(tmp_path):
    state = {"mllp": True}
    checks = Liveness()
    checks.add("mllp", lambda: None if state["mllp"] else "listener closed")
    checks.add("broken", lambda: 1 / 0)
    app = create_app(ReceiverContext(Registry(tmp_path / "t.toml"), SecretSettings.from_env({}), handler=None,
                                     liveness=checks))
    with TestClient(app) as client:
        state["mllp"] = False
        got = client.get("/healthz")
        assert got.status_code == 503
        assert got.json()["problems"] == {"mllp": "listener closed", "broken": "check failed (ZeroDivisionError)"}
        state["mllp"] = True
        checks._checks.pop("broken")
        got = client.get("/healthz")
        assert got.status_code == 200 and got.json() == {"status": "ok", "parts": ["mllp"]}
