"""`vigil serve control` starts a real process: gRPC health, the console and metrics answer; SIGTERM
stops it cleanly."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.integration.grpc.test_entrypoints import free_port

VIGIL = Path(sys.executable).with_name("vigil")
START_TIMEOUT_S = 60


def test_serve_control_answers_health_console_and_metrics(stack, tmp_path):
    port, health_port, console_port, metrics_port = free_port(), free_port(), free_port(), free_port()
    env = {**os.environ, "VIGIL_GRPC_CONTROL_ADDR": f"127.0.0.1:{port}", "VIGIL_GRPC_HEALTH_PORT": str(health_port),
           "VIGIL_CONTROL_CONSOLE_ADDR": f"127.0.0.1:{console_port}", "VIGIL_METRICS_PORT": str(metrics_port),
           "VIGIL_TENANTS_FILE": str(tmp_path / "tenants.toml"), "VIGIL_ENV": "test", "VIGIL_LOG_LEVEL": "warning"}
    process = subprocess.Popen([str(VIGIL), "serve", "control"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with grpc.insecure_channel(f"127.0.0.1:{health_port}") as channel:
                    status = health_pb2_grpc.HealthStub(channel).Check(
                        health_pb2.HealthCheckRequest(service="vigil.v1.Control"), timeout=2).status
                console = httpx.get(f"http://127.0.0.1:{console_port}/login", timeout=5)
                break
            except (grpc.RpcError, httpx.HTTPError):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"control did not start: {process.stdout.read().decode()[-2000:]}")
                time.sleep(0.3)
        assert status == health_pb2.HealthCheckResponse.SERVING
        assert console.status_code == 200 and "Operator token" in console.text
        metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
        assert "vigil_dlq_new_fingerprints_total" in metrics
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
    assert code == 0
