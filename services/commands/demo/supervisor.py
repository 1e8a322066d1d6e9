"""The process supervisor: one subprocess per service, its log under the plan's folder, a
health check per kind, stop (SIGTERM, then SIGKILL) and kill/restart for fault injection.

Only processes started here are ever signalled, each by its own pid (its own session, so its
children go with it).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import httpx

from services.commands.demo.plan import DemoPlan, ServiceDef

HEALTH_TIMEOUT_S = 90.0
#: Liveness, as the kubelet does it in deploy/k8s: every 5 s; 3 failures in a row (15 s) restart.
LIVENESS_PERIOD_S = 5.0
LIVENESS_FAILURES = 3
#: Like initialDelaySeconds: a process younger than this is not judged (start-up takes 5-20 s here).
LIVENESS_GRACE_S = 60.0
STOP_TIMEOUT_S = 10.0
POLL_S = 0.25


class SupervisorError(RuntimeError):
    pass


def grpc_serving(port: int, timeout: float = 1.0) -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout)
        except grpc.RpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        return httpx.get(url, timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class Running:
    service: ServiceDef
    proc: subprocess.Popen
    log_path: str
    restarts: int = 0
    started_at: float = field(default_factory=time.monotonic)


@dataclass
class Supervisor:
    plan: DemoPlan
    running: dict[str, Running] = field(default_factory=dict)
    unwatched: set[str] = field(default_factory=set)      # not restarted by ``watch`` (failed optional ones)
    liveness_restarts: list[str] = field(default_factory=list)

    def start(self, service: ServiceDef) -> Running:
        log_path = self.plan.logs_dir / f"{service.name}.log"
        log = open(log_path, "ab")
        proc = subprocess.Popen([sys.executable, "-m", service.app_module, *service.args], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                env=self.plan.service_env(service),
                                preexec_fn=(lambda: os.nice(service.nice)) if service.nice else None)
        log.close()
        previous = self.running.get(service.name)
        entry = Running(service, proc, str(log_path), previous.restarts + 1 if previous else 0)
        self.running[service.name] = entry
        return entry

    def healthy(self, name: str) -> bool:
        entry = self.running[name]
        port = self.plan.port(entry.service.port_key)
        if entry.service.kind == "grpc":
            return grpc_serving(port)
        if entry.service.kind == "stage":
            return http_ok(f"http://127.0.0.1:{port}/readyz")
        return http_ok(f"http://127.0.0.1:{port}/healthz")

    def wait_healthy(self, names: list[str] | None = None, timeout: float = HEALTH_TIMEOUT_S) -> None:
        pending = list(names or self.running)
        deadline = time.monotonic() + timeout
        while pending:
            for name in list(pending):
                entry = self.running[name]
                if entry.proc.poll() is not None:
                    raise SupervisorError(f"{name} exited with code {entry.proc.returncode}; "
                                          f"see {entry.log_path}:\n{self.tail(name)}")
                if self.healthy(name):
                    pending.remove(name)
            if pending and time.monotonic() > deadline:
                raise SupervisorError(f"not healthy within {timeout:.0f}s: {', '.join(pending)} "
                                      f"(logs in {self.plan.logs_dir})")
            if pending:
                time.sleep(POLL_S)

    def tail(self, name: str, chars: int = 1500) -> str:
        try:
            with open(self.running[name].log_path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - chars))
                return fh.read().decode(errors="replace")
        except OSError:
            return ""

    def kill(self, name: str) -> None:
        """SIGKILL the service's process group (fault injection: no clean shutdown)."""
        entry = self.running[name]
        if entry.proc.poll() is None:
            os.killpg(entry.proc.pid, signal.SIGKILL)
            entry.proc.wait()

    def restart(self, name: str) -> Running:
        self.kill(name)
        return self.start(self.running[name].service)

    def stop(self, name: str) -> None:
        entry = self.running[name]
        if entry.proc.poll() is None:
            try:
                os.killpg(entry.proc.pid, signal.SIGTERM)
                entry.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(entry.proc.pid, signal.SIGKILL)
                entry.proc.wait()
            except ProcessLookupError:
                pass

    def stop_all(self) -> None:
        for name in reversed(list(self.running)):
            self.stop(name)

    def live(self, name: str) -> bool:
        """Liveness: a stage's /healthz (false when a runner died or stopped making progress);
        other services: serving at all."""
        entry = self.running[name]
        if entry.proc.poll() is not None:
            return False
        if entry.service.kind == "stage":
            return http_ok(f"http://127.0.0.1:{self.plan.port(entry.service.port_key)}/healthz", timeout=3.0)
        return True

    def watch(self, stop: threading.Event, log=lambda m: None) -> threading.Thread:
        """Restart a service whose liveness failed LIVENESS_FAILURES times in a row (in a thread)."""
        def loop() -> None:
            failures: dict[str, int] = {}
            while not stop.wait(LIVENESS_PERIOD_S):
                for name in list(self.running):
                    if name in self.unwatched or time.monotonic() - self.running[name].started_at < LIVENESS_GRACE_S:
                        continue
                    failures[name] = 0 if self.live(name) else failures.get(name, 0) + 1
                    if failures[name] >= LIVENESS_FAILURES:
                        log(f"{name}: liveness failed {LIVENESS_FAILURES} times; restarting it")
                        self.restart(name)
                        self.liveness_restarts.append(name)
                        failures[name] = 0
        thread = threading.Thread(target=loop, name="liveness", daemon=True)
        thread.start()
        return thread

    def dead(self) -> list[str]:
        return [name for name, entry in self.running.items() if entry.proc.poll() is not None]
