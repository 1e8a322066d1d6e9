"""`vigil serve inference|tools` start real processes that answer health on their ports and stop
cleanly on SIGTERM."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tests.fixtures.ports import free_port

VIGIL = Path(sys.executable).with_name("vigil")
START_TIMEOUT_S = 60



def check(port: int, service: str) -> int:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service),
                                                          timeout=2).status


@pytest.mark.parametrize("service, full_name", [("tools", "vigil.v1.Tools"), ("inference", "vigil.v1.Inference")])
def test_serve_answers_health_and_stops_on_sigterm(stack, tmp_path, service, full_name):
    port, health_port = free_port(), free_port()
    env = {**os.environ, f"VIGIL_GRPC_{service.upper()}_ADDR": f"127.0.0.1:{port}",
           "VIGIL_GRPC_HEALTH_PORT": str(health_port), "VIGIL_TENANTS_FILE": str(tmp_path / "tenants.toml"),
           "VIGIL_ENV": "test", "VIGIL_LOG_LEVEL": "warning"}
    process = subprocess.Popen([str(VIGIL), "serve", service], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                statuses = (check(port, full_name), check(health_port, full_name))
                break
            except grpc.RpcError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"{service} did not start: {process.stdout.read().decode()[-2000:]}")
                time.sleep(0.2)
        assert statuses == (health_pb2.HealthCheckResponse.SERVING,) * 2
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
    assert code == 0


def test_serve_refuses_bad_settings(tmp_path):
    result = subprocess.run([str(VIGIL), "serve", "tools"], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "VIGIL_GRPC_TLS": "sometimes"})
    assert result.returncode == 2 and "VIGIL_GRPC_TLS" in result.stderr
