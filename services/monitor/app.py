"""The monitor service: ``python -m services.monitor.app`` runs the faust worker.

Start-up (before faust takes the event loop): settings are read (``Settings``,
``MonitorSettings``; a bad value exits 2 with its name), the tables are migrated, and every
tenant's ``findings``, ``actions`` and ``feedback`` topics are created explicitly with the
tenant's partition count. faust's leader topic is disabled, it declares no topic itself, and
the worker keeps no faust tables: every count is in PostgreSQL, written exactly once per event id
(``stream``), so the worker has no changelog topics and a restart loses or doubles nothing.

Tenants come and go while it runs: every ``registry_poll_s`` (``VIGIL_MONITOR_REGISTRY_POLL_S``,
5 s) the registry file is re-read (``tenants.TenantSet``); an added tenant's topics are created and
appended to the agent's subscription, a removed tenant's dropped, and faust's conductor re-subscribes
after ``resubscribe_s`` (``VIGIL_MONITOR_RESUBSCRIBE_S``, 3 s; faust waits 45 s by default; one
rebalance later the new topics are consumed from their start). faust ignores a change flagged during
a rebalance, so each poll also compares the conductor's subscription with the topics wanted and flags
again when they differ. ``vigil_monitor_tenant_monitored{tenant}`` says which tenants are
subscribed.

Consumer group = the app id (``vigil-platform.monitor``); session timeout 6 s (or
``VIGIL_KAFKA_SESSION_TIMEOUT_MS``, at least four heartbeats), heartbeat 1 s and rebalance
timeout 10 s, so a worker joins the embedded broker's group in seconds.

HTTP (faust web) on ``VIGIL_METRICS_PORT`` (9000): ``/metrics`` (Prometheus), ``/healthz``
(200 while the processor's sweep loop runs and, when records wait on a consumed partition, events
were processed within ``STALL_S``; else 503), ``/readyz``
(200 when the broker, Redis and PostgreSQL answer).

Timers: the sweep that marks ignored Tasks (``flush_s``), the registry poll (``registry_poll_s``),
LLM cost gauges (``LLM_POLL_S``), PSI drift check (``drift_interval_s``), gold re-score
(``gold_interval_s``; skipped while a score younger than that interval exists, so several
replicas do not re-score twice).
"""
from __future__ import annotations

import asyncio
import os
from typing import Mapping

import faust
from faust.types import TP
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from services.core import contracts
from services.core import probes
from services.core.bus.policy import session_timeout_ms
from services.core.bus.service import metrics_host
from services.core.config import ConfigError, Settings
from services.core.db import create_pool
from services.core.logging import configure, get_logger
from services.core.secrets import SecretSettings
from services.core.tenancy import Tenant, TenantError, topic_name
from services.core.tenantdb import TenantPools
from services.core.topics import ensure_topics
from services.monitor import drift, metrics, schema
from services.monitor.config import MonitorSettings
from services.monitor.store import MonitorStore, utcnow
from services.monitor.stream import Processor
from services.monitor.tenants import TenantSet

log = get_logger("vigil.monitor")

STREAMS = (contracts.FINDINGS, contracts.ACTIONS, contracts.FEEDBACK)
#: The registry poll (``ms.registry_poll_s``, 5 s) and faust's wait after a subscription change
#: before it re-subscribes (``ms.resubscribe_s``, 3 s: faust's default, 45 s, batches changes of
#: restarting agents; ours come one registry edit at a time). Poll 5 + wait 3 + one rebalance
#: (< 10) keeps "onboarded -> monitored" well under a minute.
#: faust consumer timings for a quick group join (seconds): session 6, heartbeat 1, rebalance 10.
SESSION_TIMEOUT_S, HEARTBEAT_S, REBALANCE_TIMEOUT_S = 6.0, 1.0, 10.0
LLM_POLL_S = 60.0
#: /healthz turns 503 when the flush timer has not run for this long.
STALL_S = 60.0
DEFAULT_METRICS_PORT = 9000


def session_timeout_s(env: Mapping[str, str] | None = None) -> float:
    """The stages' session timeout setting (``bus.policy.session_timeout_ms``: 6 s unless set), in
    seconds, but never under four of the worker's heartbeats."""
    return max(session_timeout_ms(os.environ if env is None else env) / 1000, 4 * HEARTBEAT_S)


def topics_of(tenant: Tenant) -> list[str]:
    return [topic_name(tenant.id, s) for s in STREAMS]


def monitored_tenants(settings: Settings, ms: MonitorSettings) -> TenantSet:
    tenants = TenantSet(settings.tenants_file, ms.tenants, settings.default_partitions)
    tenants.load()
    return tenants


async def create_topics(settings: Settings, tenants) -> None:
    for t in tenants:
        await ensure_topics(settings, topics_of(t), t.partitions)


async def prepare(settings: Settings, ms: MonitorSettings, tenants: TenantSet) -> None:
    """Migrate the tables and create every monitored tenant's topics."""
    if not tenants.current:
        raise ConfigError("no tenants to monitor: add tenants to the registry or set VIGIL_MONITOR_TENANTS")
    admin = await create_pool(settings, min_size=1, max_size=1)
    try:
        await schema.ensure_schema(admin)
    finally:
        await admin.close()
    await create_topics(settings, tenants.current.values())


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


def build_app(settings: Settings, ms: MonitorSettings, tenants: TenantSet, *,
              port: int = DEFAULT_METRICS_PORT, env: Mapping[str, str] | None = None) -> tuple[faust.App, Processor]:
    datadir = settings.state_dir / "monitor" / ms.app_id  # faust wants it; the worker keeps nothing there
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        ms.app_id, broker=f"kafka://{settings.kafka.bootstrap}", store="memory://",
        topic_allow_declare=False, topic_disable_leader=True, broker_session_timeout=session_timeout_s(env),
        broker_heartbeat_interval=HEARTBEAT_S, broker_rebalance_timeout=REBALANCE_TIMEOUT_S,
        consumer_auto_offset_reset="earliest", producer_acks=-1, stream_wait_empty=False,
        web_enabled=True, web_port=port, web_bind=metrics_host(env if env is not None else os.environ),
        web_in_thread=False,
        datadir=str(datadir), broker_credentials=broker_credentials(settings))
    app.topics._resubscribe_sleep_lock_seconds = ms.resubscribe_s
    topic = app.topic(*[name for t in tenants.current.values() for name in topics_of(t)], key_serializer="raw",
                      value_serializer="raw")
    # a list, not faust's tuple: the agent's channel clones share this very list (``Topic.clone``
    # passes ``topics`` on), so ``follow`` can change the subscription of all of them in place
    topic.topics = list(topic.topics)
    pools = TenantPools(settings, SecretSettings.from_env(env))
    store = MonitorStore(pools)
    proc = Processor(ms, store, tenants.ids)
    for tenant in tenants.current:
        metrics.MONITORED.labels(tenant).set(1)

    @app.agent(topic)
    async def monitor(stream):
        async for fevent in stream.events():
            await proc.handle(fevent)

    @app.timer(interval=ms.flush_s)
    async def flush():
        await proc.flush()

    stale = {"polls": 0}

    @app.timer(interval=ms.registry_poll_s)
    async def registry():
        change = tenants.poll()
        if change:
            stale["polls"] = 0
            await follow(app, topic, settings, proc, change)
            return
        stale["polls"] = stale["polls"] + 1 if stale_subscription(app, topic) else 0
        if stale["polls"] >= 2:  # stale for two polls in a row: not a change still being applied
            stale["polls"] = 0
            log.info("monitor.resubscribe", topics=len(topic.topics))
            app.topics._flag_changes()

    @app.timer(interval=LLM_POLL_S)
    async def llm_cost():
        today = utcnow().date()

        async def one(tenant: str) -> None:
            for row in await store.llm_daily(tenant):
                if row["day"] == today:
                    metrics.LLM_TOKENS.labels(tenant, row["model"], "prompt").set(row["prompt_tokens"])
                    metrics.LLM_TOKENS.labels(tenant, row["model"], "completion").set(row["completion_tokens"])
                    metrics.LLM_COST.labels(tenant, row["model"]).set(row["cost_usd"])
        await each_tenant(proc, "llm_cost", one)

    @app.timer(interval=ms.drift_interval_s)
    async def drift_check():
        await each_tenant(proc, "drift", lambda tenant: drift.psi_check(store, ms, tenant))

    if ms.gold_interval_s > 0:
        @app.timer(interval=ms.gold_interval_s)
        async def gold():
            async def one(tenant: str) -> None:
                scores = await store.gold_scores(tenant)
                if scores and (utcnow() - scores[-1]["time"]).total_seconds() < 0.9 * ms.gold_interval_s:
                    return
                await drift.gold_rescore(store, ms, settings.tenants_file, tenant, env=env)
            await each_tenant(proc, "gold_rescore", one)

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


async def follow(app: faust.App, topic, settings: Settings, proc: Processor, change) -> None:
    """Subscribe to added tenants' streams and drop removed ones', without a restart."""
    names = list(topic.topics)
    for tenant in change.added:
        try:
            await ensure_topics(settings, topics_of(tenant), tenant.partitions)
        except Exception as exc:  # the broker is busy: the next registry change or restart retries
            log.error("monitor.tenant_topics_failed", tenant=tenant.id, error_type=type(exc).__name__)
            continue
        names += [n for n in topics_of(tenant) if n not in names]
        proc.tenants.add(tenant.id)
        metrics.MONITORED.labels(tenant.id).set(1)
    for tenant_id in change.removed:
        removed = set(topic_name(tenant_id, s) for s in STREAMS)
        names = [n for n in names if n not in removed]
        proc.tenants.discard(tenant_id)
        metrics.MONITORED.labels(tenant_id).set(0)
    topic.topics[:] = names
    app.topics._flag_changes()  # the conductor re-reads every channel's topics and re-subscribes
    log.info("monitor.tenants_changed", added=[t.id for t in change.added], removed=list(change.removed),
             topics=len(names))


async def each_tenant(proc: Processor, what: str, fn) -> None:
    """``fn(tenant)`` for every monitored tenant; one tenant's failure (its role not provisioned
    yet, its database busy) is logged and does not stop the others, nor the timer."""
    for tenant in sorted(proc.tenants):
        try:
            await fn(tenant)
        except Exception as exc:  # noqa: BLE001  (logged with its class; the next tick tries again)
            log.error("monitor.timer_failed", timer=what, tenant=tenant, error_type=type(exc).__name__)


def stale_subscription(app: faust.App, topic) -> bool:
    """The conductor's last subscription differs from the topics wanted: faust drops a change
    flagged while a rebalance is under way, so it is flagged again (never during a rebalance)."""
    conductor = app.topics
    pending = conductor._subscription_changed is not None and conductor._subscription_changed.is_set()
    subscribed = {name for name, channels in conductor._topic_name_index.items() if channels}  # a defaultdict
    return not app.rebalancing and not pending and subscribed != set(topic.topics)


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
        asyncio.run(prepare(settings, ms, tenants))
    except (ConfigError, TenantError) as exc:
        print(f"error: {exc}", flush=True)
        raise SystemExit(2)
    asyncio.set_event_loop(asyncio.new_event_loop())
    app, _ = build_app(settings, ms, tenants, port=int(raw_port), env=source)
    log.info("monitor.starting", tenants=sorted(tenants.ids), port=int(raw_port))
    worker = faust.Worker(app, loglevel=settings.log_level)
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
