"""The monitor service: ``python -m services.monitor.app`` runs the faust worker.

Start-up (before faust takes the event loop): settings are read (``Settings``,
``MonitorSettings``; a bad value exits 2 with its name), the tables are migrated, and every
topic the worker uses is created explicitly with the tenants' partition count: the tenants'
``findings``, ``actions`` and ``feedback`` streams and faust's changelog topics
``<app id>-<table>-changelog`` (the broker's auto-created topics would get another partition
count, and faust writes a table's changelog to the partition of the event being processed).
faust's leader topic is disabled and faust declares no topic itself.

Consumer group = the app id (``vigil-platform.monitor``); session timeout 6 s, heartbeat 1 s and
rebalance timeout 10 s, so a worker joins the embedded broker's group in seconds.

HTTP (faust web) on ``VIGIL_METRICS_PORT`` (9000): ``/metrics`` (Prometheus), ``/healthz``
(200 while the processor's flush loop runs and, when records wait on a consumed partition, events
were processed within ``STALL_S``; else 503), ``/readyz``
(200 when the broker, Redis and PostgreSQL answer).

Timers: window flush (``flush_s``), LLM cost gauges (``LLM_POLL_S``), PSI drift check
(``drift_interval_s``), gold re-score (``gold_interval_s``; skipped while a score younger than
that interval exists, so several replicas do not re-score twice).
"""
from __future__ import annotations

import asyncio
import os
from datetime import timedelta
from typing import Mapping

import faust
from faust.types import TP
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from services.core import probes
from services.core.bus.service import metrics_host
from services.core.config import ConfigError, Settings
from services.core.db import create_pool
from services.core.logging import configure, get_logger
from services.core.secrets import SecretSettings
from services.core.tenancy import Registry, Tenant, topic_name
from services.core.tenantdb import TenantPools
from services.core.topics import ensure_topics
from services.monitor import drift, metrics, schema
from services.monitor.config import MonitorSettings
from services.monitor.store import MonitorStore, utcnow
from services.monitor.stream import Processor, event_time

log = get_logger("vigil.monitor")

STREAMS = ("findings", "actions", "feedback")
TABLES = ("counts", "actions", "tta", "joins")
#: faust consumer timings for a quick group join (seconds): session 6, heartbeat 1, rebalance 10.
SESSION_TIMEOUT_S, HEARTBEAT_S, REBALANCE_TIMEOUT_S = 6.0, 1.0, 10.0
LLM_POLL_S = 60.0
#: /healthz turns 503 when the flush timer has not run for this long.
STALL_S = 60.0
DEFAULT_METRICS_PORT = 9000


def changelog_topics(app_id: str) -> list[str]:
    return [f"{app_id}-{table}-changelog" for table in TABLES]


def monitored_tenants(settings: Settings, ms: MonitorSettings) -> list[Tenant]:
    registry = Registry.load(settings.tenants_file)
    if ms.tenants:
        return [registry.get(t) if t in registry else Tenant(id=t, partitions=settings.default_partitions)
                for t in ms.tenants]
    return list(registry)


async def prepare(settings: Settings, ms: MonitorSettings, tenants: list[Tenant]) -> int:
    """Migrate the tables and create every topic; returns the partition count used."""
    if not tenants:
        raise ConfigError("no tenants to monitor: add tenants to the registry or set VIGIL_MONITOR_TENANTS")
    partitions = {t.partitions for t in tenants}
    if len(partitions) > 1:
        raise ConfigError(f"monitored tenants have different partition counts {sorted(partitions)}: run one "
                          "monitor per partition count (VIGIL_MONITOR_TENANTS, VIGIL_MONITOR_APP_ID)")
    count = partitions.pop()
    admin = await create_pool(settings, min_size=1, max_size=1)
    try:
        await schema.ensure_schema(admin)
    finally:
        await admin.close()
    names = [topic_name(t.id, s) for t in tenants for s in STREAMS] + changelog_topics(ms.app_id)
    await ensure_topics(settings, names, count)
    return count


def broker_credentials(settings: Settings):
    """faust's credentials for the platform identity (VIGIL_KAFKA_SASL_* / TLS), or None on PLAINTEXT."""
    kafka = settings.kafka
    kwargs = kafka.client_kwargs()
    if kafka.security_protocol.startswith("SASL"):
        return faust.SASLCredentials(username=kwargs["sasl_plain_username"], password=kwargs["sasl_plain_password"],
                                     mechanism=kafka.sasl_mechanism, ssl_context=kwargs.get("ssl_context"))
    if kafka.security_protocol == "SSL":
        return faust.SSLCredentials(kwargs["ssl_context"])
    return None


def build_app(settings: Settings, ms: MonitorSettings, tenants: list[Tenant], partitions: int, *,
              port: int = DEFAULT_METRICS_PORT, env: Mapping[str, str] | None = None) -> tuple[faust.App, Processor]:
    datadir = settings.state_dir / "monitor" / ms.app_id  # faust wants it; memory store keeps nothing there
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        ms.app_id, broker=f"kafka://{settings.kafka.bootstrap}", store="memory://", topic_partitions=partitions,
        topic_allow_declare=False, topic_disable_leader=True, broker_session_timeout=SESSION_TIMEOUT_S,
        broker_heartbeat_interval=HEARTBEAT_S, broker_rebalance_timeout=REBALANCE_TIMEOUT_S,
        consumer_auto_offset_reset="earliest", producer_acks=-1, stream_wait_empty=False,
        web_enabled=True, web_port=port, web_bind=metrics_host(env if env is not None else os.environ),
        web_in_thread=False,
        datadir=str(datadir), broker_credentials=broker_credentials(settings))
    topic = app.topic(*[topic_name(t.id, s) for t in tenants for s in STREAMS], key_serializer="raw",
                      value_serializer="raw")
    window = timedelta(seconds=ms.window_s)
    expires = timedelta(days=ms.expires_days)
    counts = app.Table("counts", default=float, partitions=partitions).tumbling(
        window, expires=expires).relative_to(event_time)
    actions = app.Table("actions", default=float, partitions=partitions).hopping(
        timedelta(days=ms.override_window_days), timedelta(days=1), expires=expires).relative_to(event_time)
    tta = app.Table("tta", default=list, partitions=partitions).tumbling(
        window, expires=expires).relative_to(event_time)
    joins = app.Table("joins", default=None, partitions=partitions)
    pools = TenantPools(settings, SecretSettings.from_env(env))
    store = MonitorStore(pools)
    proc = Processor(ms, store, counts, actions, tta, joins)
    ids = [t.id for t in tenants]

    @app.agent(topic)
    async def monitor(stream):
        async for fevent in stream.events():
            await proc.handle(fevent)

    @app.timer(interval=ms.flush_s)
    async def flush():
        await proc.flush()

    @app.timer(interval=LLM_POLL_S)
    async def llm_cost():
        today = utcnow().date()
        for tenant in ids:
            for row in await store.llm_daily(tenant):
                if row["day"] == today:
                    metrics.LLM_TOKENS.labels(tenant, row["model"], "prompt").set(row["prompt_tokens"])
                    metrics.LLM_TOKENS.labels(tenant, row["model"], "completion").set(row["completion_tokens"])
                    metrics.LLM_COST.labels(tenant, row["model"]).set(row["cost_usd"])

    @app.timer(interval=ms.drift_interval_s)
    async def drift_check():
        for tenant in ids:
            await drift.psi_check(store, ms, tenant)

    if ms.gold_interval_s > 0:
        @app.timer(interval=ms.gold_interval_s)
        async def gold():
            for tenant in ids:
                scores = await store.gold_scores(tenant)
                if scores and (utcnow() - scores[-1]["time"]).total_seconds() < 0.9 * ms.gold_interval_s:
                    continue
                try:
                    await drift.gold_rescore(store, ms, settings.tenants_file, tenant, env=env)
                except Exception as exc:
                    log.error("monitor.gold_rescore_failed", tenant=tenant, error=str(exc)[:200])

    @app.page("/metrics")
    async def metrics_page(web, request):
        # aiohttp refuses a charset inside content_type; the exposition format is ASCII
        return web.bytes(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST.split(";")[0] + "; version=0.0.4")

    @app.page("/healthz")
    async def healthz(web, request):
        def highwater(topic: str, partition: int) -> int | None:
            try:
                return app.consumer.highwater(TP(topic, partition))
            except Exception:  # not assigned (rebalance) or not fetched yet: no lag known
                return None

        body = proc.health(STALL_S, highwater)
        return web.json(body, status=200 if body["live"] else 503)

    @app.page("/readyz")
    async def readyz(web, request):
        checks = await asyncio.gather(
            asyncio.to_thread(probes.probe_kafka, settings.kafka.host, settings.kafka.port),
            asyncio.to_thread(probes.probe_redis, *settings.redis_host_port),
            asyncio.to_thread(probes.probe_postgres, *settings.postgres_host_port))
        deps = dict(zip(("kafka", "redis", "postgres"), checks))
        ready = all(v == "up" for v in deps.values())
        return web.json({"ready": ready, "dependencies": deps}, status=200 if ready else 503)

    return app, proc


def main(env: Mapping[str, str] | None = None) -> None:
    source = os.environ if env is None else env
    try:
        settings = Settings.from_env(source)
        ms = MonitorSettings.from_env(source)
        raw_port = source.get("VIGIL_METRICS_PORT") or str(DEFAULT_METRICS_PORT)
        if not raw_port.isdigit() or not 0 < int(raw_port) < 65536:
            raise ConfigError(f"VIGIL_METRICS_PORT={raw_port!r}: expected a port number")
        configure(settings.log_level)
        tenants = monitored_tenants(settings, ms)
        partitions = asyncio.run(prepare(settings, ms, tenants))
    except ConfigError as exc:
        print(f"error: {exc}", flush=True)
        raise SystemExit(2)
    asyncio.set_event_loop(asyncio.new_event_loop())
    app, _ = build_app(settings, ms, tenants, partitions, port=int(raw_port), env=source)
    log.info("monitor.starting", tenants=[t.id for t in tenants], partitions=partitions, port=int(raw_port))
    worker = faust.Worker(app, loglevel=settings.log_level)
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
