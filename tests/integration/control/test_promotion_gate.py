"""SetMode promotions over gRPC are held to the measured gates in the control process as the
manifests and the demo start it (``python -m services.commands.control_service``), and a control
process started without the gates refuses promotions instead of granting them unchecked."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.control.client import ControlClient
from services.core.errors import ConflictError
from services.core.grpc.settings import GrpcSettings
from services.core.modes import NO_GATE
from services.core.tokens import issue
from services.monitor.gates import CHECK_NAME
from tests.fixtures.control import TOKEN_KEY
from tests.integration.grpc.test_entrypoints import free_port

REPO = Path(__file__).resolve().parents[3]
START_TIMEOUT_S = 60


def _start(module: str, tmp_path) -> tuple[subprocess.Popen, str]:
    port, health_port = free_port(), free_port()
    env = {**os.environ, "VIGIL_GRPC_CONTROL_ADDR": f"127.0.0.1:{port}", "VIGIL_GRPC_HEALTH_PORT": str(health_port),
           "VIGIL_CONTROL_CONSOLE_ADDR": "off", "VIGIL_GRPC_TOKEN_KEY": TOKEN_KEY,
           "VIGIL_TENANTS_FILE": str(tmp_path / "tenants.toml"), "VIGIL_ENV": "test", "VIGIL_LOG_LEVEL": "warning"}
    env.pop("VIGIL_METRICS_PORT", None)
    process = subprocess.Popen([sys.executable, "-m", module], cwd=REPO, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            with grpc.insecure_channel(f"127.0.0.1:{health_port}") as channel:
                status = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service="vigil.v1.Control"), timeout=2).status
            if status == health_pb2.HealthCheckResponse.SERVING:
                return process, f"127.0.0.1:{port}"
        except grpc.RpcError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"{module} did not start: {process.stdout.read().decode()[-2000:]}")
        time.sleep(0.2)


async def _promote(target: str, tenant: str):
    from vigil.v1 import control_pb2 as pb

    grpc_settings = GrpcSettings.from_env({"VIGIL_GRPC_TOKEN_KEY": TOKEN_KEY})
    token = issue(grpc_settings.tokens, sub="ops-test", tenant=tenant, role="operator")
    async with ControlClient(grpc_settings, token, target=target) as cc:
        with pytest.raises(ConflictError) as refused:
            await cc.call("SetMode", pb.SetModeRequest(mode="active", reason="go-live"))
        demoted = await cc.call("SetMode", pb.SetModeRequest(mode="silent", reason="never gated"))
        assert demoted.mode == "silent"
        forced = await cc.call("SetMode", pb.SetModeRequest(mode="pilot", force=True, reason="CMO sign-off"))
        assert forced.mode == "pilot"
    return str(refused.value)


@pytest.mark.parametrize("module, refusal", [
    ("services.commands.control_service", f"{CHECK_NAME}: no gate decision for silent -> active"),
    ("services.control.app", NO_GATE),
])
async def test_set_mode_promotions_pass_the_gates_or_are_refused(stack, provision, tmp_path, module, refusal):
    tenant = await provision()
    process, target = await asyncio.to_thread(_start, module, tmp_path)
    try:
        message = await _promote(target, tenant)
    finally:
        process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(process.wait, 30)
    assert refusal in message
    assert code == 0
