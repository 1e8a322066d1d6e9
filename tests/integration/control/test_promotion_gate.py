"""The control service process consults the promotion gates: a SetMode promotion over gRPC is held
to the same measured gates as `vigil mode set`, however the process is started."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.integration.grpc.test_entrypoints import free_port

REPO = Path(__file__).resolve().parents[3]
PROBE = """
import asyncio, os, signal
from services.core import modes
from services.control import app

async def main():
    task = asyncio.create_task(app.serve())
    for _ in range(600):  # registered, and started far enough to shut down on SIGTERM
        await asyncio.sleep(0.1)
        if task.done() or (modes.PROMOTION_CHECKS and signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL):
            break
    print("checks:", ",".join(name for name, _ in modes.PROMOTION_CHECKS), flush=True)
    os.kill(os.getpid(), signal.SIGTERM)
    await task

asyncio.run(main())
"""


def test_the_control_process_registers_the_promotion_gates(stack, tmp_path):
    from services.monitor.gates import CHECK_NAME

    env = {**os.environ, "VIGIL_GRPC_CONTROL_ADDR": f"127.0.0.1:{free_port()}",
           "VIGIL_GRPC_HEALTH_PORT": str(free_port()), "VIGIL_CONTROL_CONSOLE_ADDR": "off",
           "VIGIL_TENANTS_FILE": str(tmp_path / "tenants.toml"), "VIGIL_ENV": "test", "VIGIL_LOG_LEVEL": "warning"}
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"checks: {CHECK_NAME}" in result.stdout
