"""`python -m services.scheduling.app` starts a real stage host for the registry's tenants, answers
/healthz and /readyz, and stops cleanly on SIGTERM."""
from __future__ import annotations

import asyncio
import os
import signal
import sys

import aiohttp
from tests.fixtures.ports import free_port

START_TIMEOUT_S = 60



async def test_stage_process_serves_health_and_stops_on_sigterm(sched):
    port = free_port()
    env = {**os.environ, "VIGIL_TENANTS_FILE": str(sched.path), "VIGIL_ENV": "test", "VIGIL_METRICS_PORT": str(port),
           "VIGIL_GRPC_TOKEN_KEY": "k" * 48, "VIGIL_GRPC_TOOLS_ADDR": f"127.0.0.1:{sched.tools.port}",
           "VIGIL_LOG_LEVEL": "warning", "VIGIL_STATE_DIR": str(sched.stack.state_dir)}
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "services.scheduling.app", env=env,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    statuses = {}
    try:
        deadline = asyncio.get_running_loop().time() + START_TIMEOUT_S
        async with aiohttp.ClientSession() as http:
            while asyncio.get_running_loop().time() < deadline and process.returncode is None:
                try:
                    for path in ("/healthz", "/readyz"):
                        async with http.get(f"http://127.0.0.1:{port}{path}") as response:
                            statuses[path] = response.status
                    if statuses == {"/healthz": 200, "/readyz": 200}:
                        break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.3)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(process.communicate(), 30)
    assert statuses == {"/healthz": 200, "/readyz": 200}, output.decode()[-2000:]
    assert process.returncode == 0, output.decode()[-2000:]
