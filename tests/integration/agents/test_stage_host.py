"""The stage host: per-tenant runners, registry pickup without restart, /healthz tied to
progress, /readyz, /metrics, and a graceful SIGTERM of a real stage process."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import httpx

from services.core.bus import ConsumerTuning, StageSpec
from services.core.bus.service import StageHost
from services.core.tenancy import Registry, Tenant

from tests.integration.agents.conftest import FAST_RETRY, read_topic
from tests.integration.agents.notes import changed

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


async def _wait(predicate, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(0.1)
    return False


async def test_health_follows_progress_and_new_tenants_start_without_restart(stack, tenant_id, tmp_path):
    release = asyncio.Event()
    handled: list[str] = []

    async def handler(event, ctx):
        if event.key == "stall":
            await release.wait()
        handled.append(ctx.tenant)

    spec = StageSpec(name="hosttest", input_stream="ehr-events", handler=handler, retry=FAST_RETRY,
                     tuning=ConsumerTuning(poll_timeout_ms=100, commit_interval_ms=200, handler_timeout_s=60.0, liveness_stall_s=1.5))
    path = tmp_path / "tenants.toml"
    Registry(path, [Tenant(id=tenant_id)]).save()
    settings = stack.with_overrides(tenants_file=path)
    host = StageHost(settings, [spec], port=0, host="127.0.0.1", registry_poll_s=0.2)
    await host.start()
    stop = asyncio.Event()
    task = asyncio.create_task(host.run(stop))
    base = f"http://127.0.0.1:{host.port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=5) as http:
            assert (await http.get("/healthz")).status_code == 200
            ready = await http.get("/readyz")
            assert ready.status_code == 200 and ready.json()["dependencies"] == {
                "kafka": "up", "redis": "up", "postgres": "up"}
            # a tenant added to the registry gets its runner without a restart
            second = tenant_id + "b"
            Registry(path, [Tenant(id=tenant_id), Tenant(id=second)]).save()
            assert await _wait(lambda: _has(host, second))
            from services.core.bus import Publisher
            async with Publisher(stack, second) as pub:
                await pub.publish("ehr-events", changed(second, "Patient", "p1", "1", "p1"))
            assert await _wait(lambda: _true(second in handled))
            metrics = (await http.get("/metrics")).text
            assert f'vigil_stage_succeeded_total{{stage="hosttest",tenant="{second}"}} 1.0' in metrics
            # a handler that never returns stalls the poll loop: liveness fails after the stall window
            async with Publisher(stack, tenant_id) as pub:
                await pub.publish("ehr-events", changed(tenant_id, "Patient", "stall", "1", "stall"))
            assert await _wait(lambda: _status(http, 503), timeout=15)
            body = (await http.get("/healthz")).json()
            stalled = [r for r in body["runners"] if not r["live"]]
            assert [(r["tenant"], r["stage"]) for r in stalled] == [(tenant_id, "hosttest")]
            release.set()
            assert await _wait(lambda: _status(http, 200), timeout=15)
            # a tenant removed from the registry is stopped
            Registry(path, [Tenant(id=second)]).save()
            assert await _wait(lambda: _true(not any(k[0] == tenant_id for k in host.runners)))
    finally:
        release.set()
        stop.set()
        await task
        await host.stop()


async def _has(host, tenant):
    return any(k[0] == tenant for k in host.runners)


async def _true(value):
    return value


async def _status(http, code):
    return (await http.get("/healthz")).status_code == code


async def test_stage_process_serves_health_and_stops_on_sigterm(stack, tenant_id, tmp_path):
    path = tmp_path / "tenants.toml"
    Registry(path, [Tenant(id=tenant_id)]).save()
    env = {**os.environ, "VIGIL_TENANTS_FILE": str(path), "VIGIL_METRICS_PORT": "0", "VIGIL_ENV": "test",
           "VIGIL_KAFKA_BOOTSTRAP": stack.kafka.bootstrap, "VIGIL_REDIS_URL": stack.redis_url,
           "VIGIL_POSTGRES_DSN": stack.postgres_dsn, "PYTHONUNBUFFERED": "1"}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "services.extraction.app", cwd=REPO, env=env,
                                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    port = None
    try:
        deadline = time.monotonic() + 60
        while port is None and time.monotonic() < deadline:
            line = (await asyncio.wait_for(proc.stdout.readline(), timeout=60)).decode()
            if '"extraction.started"' in line:
                port = json.loads(line)["port"]
        assert port, "the stage did not report its port"
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            health = (await http.get("/healthz")).json()
            assert health["live"] and [(r["tenant"], r["stage"]) for r in health["runners"]] == \
                [(tenant_id, "extraction")]
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), timeout=30) == 0
        rest = (await proc.stdout.read()).decode()
        assert "stagehost.tenant_stopped" in rest
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
