"""The stage host: one process runs a stage for every tenant, with health and metrics over HTTP.

    host = StageHost(settings, [SPEC], resources=deps)      # deps: anything with start()/close()
    await host.start()                                       # HTTP up, one StageRunner per (tenant, spec)
    await host.run(stop_event)                               # until SIGTERM (see ``serve_stage``)
    await host.stop()

Every stage's ``python -m services.<stage>.app`` calls ``serve_stage(name, build)``, where
``build(settings, env)`` returns ``(specs, resources)``.

- Tenants come from the registry (``settings.tenants_file``); every ``REGISTRY_POLL_S`` the
  file is checked and runners are started for added tenants and stopped for removed ones,
  without a restart. Each runner has its own consumer, producer, Redis client and pool.
- HTTP on ``VIGIL_METRICS_HOST``:``VIGIL_METRICS_PORT`` (default 127.0.0.1:9000; port 0 picks a free one, see ``host.port``):
  ``/healthz`` 200 while every runner makes progress (``StageRunner.health()["live"]``) and no
  runner task has died, else 503; ``/readyz`` 200 when the broker, Redis and PostgreSQL answer
  (socket probes, cached ``READY_CACHE_S``); ``/metrics`` the Prometheus registry.
- SIGTERM/SIGINT: every runner finishes its batch, commits and leaves its group.
"""
from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from typing import Any, Awaitable, Callable, Iterable, Mapping, Sequence

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from services.core import probes, serving
from services.core.bus.policy import tune_gc
from services.core.bus.runtime import StageRunner, StageSpec
from services.core.bus.topics import ensure_stage_topics
from services.core.config import ConfigError, Settings
from services.core.logging import configure, get_logger
from services.core.tenancy import Registry, Tenant, TenantError

log = get_logger("vigil.stagehost")

DEFAULT_METRICS_PORT = 9000
#: Health and metrics listen on loopback unless ``VIGIL_METRICS_HOST`` says otherwise (the
#: manifests set 0.0.0.0 so the kubelet's probes and Prometheus reach the pod).
DEFAULT_METRICS_HOST = "127.0.0.1"
#: The registry file is re-read at most this often (a stat per poll; a parse only when it changed).
REGISTRY_POLL_S = 5.0
#: /readyz probes (three sockets, 1.5 s timeout each) are reused for this long.
READY_CACHE_S = 2.0


def metrics_host(env: Mapping[str, str]) -> str:
    return (env.get("VIGIL_METRICS_HOST") or DEFAULT_METRICS_HOST).strip()


def metrics_port(env: Mapping[str, str]) -> int:
    raw = env.get("VIGIL_METRICS_PORT") or str(DEFAULT_METRICS_PORT)
    if not raw.isdigit() or int(raw) > 65535:
        raise ConfigError(f"VIGIL_METRICS_PORT={raw!r}: expected a port number (0 = any free port)")
    return int(raw)


class StageHost:
    def __init__(self, settings: Settings, specs: Sequence[StageSpec], *, port: int | None = DEFAULT_METRICS_PORT,
                 host: str = DEFAULT_METRICS_HOST, tenants: Iterable[str] | None = None, resources: Iterable[Any] = (),
                 registry_poll_s: float = REGISTRY_POLL_S):
        """``tenants`` pins the tenant list (no registry polling); default: the registry. ``port=None``
        serves no HTTP: a process with its own server (cdshooks) reports ``health()`` there."""
        self.settings, self.specs = settings, list(specs)
        self._bind, self._want_port = host, port
        self._pinned = list(tenants) if tenants is not None else None
        self.resources = list(resources)
        self.registry_poll_s = registry_poll_s
        self.runners: dict[tuple[str, str], StageRunner] = {}
        self._tasks: dict[tuple[str, str], asyncio.Task] = {}
        self._stops: dict[str, asyncio.Event] = {}
        self._dead: set[tuple[str, str]] = set()
        self._stamp: tuple[int, int] | None = None
        self._ready: tuple[float, dict] | None = None
        self._synced = False  # every tenant of the registry had its runners started once
        self._web: web.AppRunner | None = None
        self.port: int | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        for resource in self.resources:
            if hasattr(resource, "start"):
                await resource.start()
        if self._want_port is not None:
            await self._serve_http()
        await self.sync_tenants()
        log.info("stagehost.started", port=self.port, stages=[s.name for s in self.specs],
                 tenants=sorted(self._stops))

    async def _serve_http(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        self._web = web.AppRunner(app, access_log=None)
        await self._web.setup()
        site = web.TCPSite(self._web, self._bind, self._want_port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.registry_poll_s)
            except TimeoutError:
                pass
            if not stop.is_set():
                await self.sync_tenants()

    async def stop(self) -> None:
        for tenant in list(self._stops):
            await self._stop_tenant(tenant)
        if self._web is not None:
            await self._web.cleanup()
        for resource in reversed(self.resources):
            if hasattr(resource, "close"):
                await resource.close()

    # -- tenants -----------------------------------------------------------------------------
    def _wanted(self) -> list[Tenant] | None:
        """The tenants that should run now, or None when the registry did not change."""
        if self._pinned is not None:
            if self._stamp is not None:
                return None
            self._stamp = (0, 0)
            registry = Registry.load(self.settings.tenants_file)
            return [registry.get(t) if t in registry else Tenant(id=t) for t in self._pinned]
        path = self.settings.tenants_file
        try:
            stat = path.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            stamp = (-1, -1)
        if stamp == self._stamp:
            return None
        try:
            registry = Registry.load(path)
        except TenantError as exc:  # a half-written or broken registry: keep what runs
            log.warning("stagehost.registry_invalid", error=str(exc)[:200])
            return None
        self._stamp = stamp
        return list(registry)

    async def sync_tenants(self) -> None:
        wanted = self._wanted()
        if wanted is None:
            return
        ids = {t.id for t in wanted}
        for tenant in [t for t in self._stops if t not in ids]:
            await self._stop_tenant(tenant)
        # Concurrently: a runner's start waits for its consumer group join (seconds on some brokers).
        # Every start finishes (started or cleaned up) before a failure is raised.
        outcomes = await asyncio.gather(*(self._start_tenant(t) for t in wanted if t.id not in self._stops),
                                        return_exceptions=True)
        failed = [e for e in outcomes if isinstance(e, BaseException)]
        if failed:
            raise failed[0]
        self._synced = True

    async def _start_tenant(self, tenant: Tenant) -> None:
        await ensure_stage_topics(self.settings, tenant, self.specs)
        runners = [StageRunner(self.settings, tenant.id, spec) for spec in self.specs]
        started = await asyncio.gather(*(r.start() for r in runners), return_exceptions=True)
        failed = [e for e in started if isinstance(e, BaseException)]
        if failed:  # none of the tenant's stages runs half-started
            for runner, outcome in zip(runners, started):
                if not isinstance(outcome, BaseException):
                    await runner.stop()
            raise failed[0]
        stop = self._stops[tenant.id] = asyncio.Event()
        for spec, runner in zip(self.specs, runners):
            key = (tenant.id, spec.name)
            self.runners[key] = runner
            self._tasks[key] = asyncio.create_task(self._supervise(key, runner, stop))
        log.info("stagehost.tenant_started", tenant=tenant.id)

    async def _supervise(self, key: tuple[str, str], runner: StageRunner, stop: asyncio.Event) -> None:
        try:
            await runner.run(stop)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a dead runner makes /healthz fail, so the pod is restarted
            self._dead.add(key)
            log.error("stagehost.runner_died", tenant=key[0], stage=key[1], error_type=type(exc).__name__)

    async def _stop_tenant(self, tenant: str) -> None:
        self._stops.pop(tenant).set()
        for key in [k for k in self.runners if k[0] == tenant]:
            await self._tasks.pop(key)
            await self.runners.pop(key).stop()
            self._dead.discard(key)
        log.info("stagehost.tenant_stopped", tenant=tenant)

    # -- HTTP --------------------------------------------------------------------------------
    def health(self) -> dict:
        runners = [{**r.health(), "dead": key in self._dead} for key, r in sorted(self.runners.items())]
        live = all(r["live"] and not r["dead"] for r in runners)
        return {"live": live, "runners": runners}

    async def _healthz(self, _request: web.Request) -> web.Response:
        body = self.health()
        return web.json_response(body, status=200 if body["live"] else 503)

    async def readiness(self) -> dict:
        now = time.monotonic()
        if self._ready is None or now - self._ready[0] > READY_CACHE_S:
            s = self.settings
            checks = await asyncio.gather(
                asyncio.to_thread(probes.probe_kafka, s.kafka.host, s.kafka.port),
                asyncio.to_thread(probes.probe_redis, *s.redis_host_port),
                asyncio.to_thread(probes.probe_postgres, *s.postgres_host_port))
            self._ready = (now, dict(zip(("kafka", "redis", "postgres"), checks)))
        deps = self._ready[1]
        return {"ready": all(v == "up" for v in deps.values()) and self._synced and bool(self.runners),
                "dependencies": deps, "runners": len(self.runners)}

    async def _readyz(self, _request: web.Request) -> web.Response:
        body = await self.readiness()
        return web.json_response(body, status=200 if body["ready"] else 503)

    async def _metrics(self, _request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})


#: ``build(settings, env)`` -> (specs, resources): what a stage app hands to ``serve_stage``.
Build = Callable[[Settings, Mapping[str, str]], Awaitable[tuple[Sequence[StageSpec], Sequence[Any]]]]


async def serve(name: str, build: Build, env: Mapping[str, str] | None = None) -> None:
    source = os.environ if env is None else env
    settings = Settings.from_env(source)
    configure(settings.log_level)
    tune_gc()
    specs, resources = await build(settings, source)
    specs = [dataclasses.replace(spec, retry=spec.retry.with_env(source)) for spec in specs]
    host = StageHost(settings, specs, port=metrics_port(source), host=metrics_host(source), resources=resources)
    stop = serving.stop_on_signals()
    await host.start()
    log.info(f"{name}.started", port=host.port)
    try:
        await host.run(stop)
    finally:
        await host.stop()


def serve_stage(name: str, build: Build) -> None:
    """Entry point of ``python -m services.<stage>.app``: exit 2 with a message on bad settings."""
    serving.main(lambda: serve(name, build))
