"""The ingest service: MLLP listener + notification receiver + heartbeat watchdog + per-patient polling.

    python -m services.ingest.app        (or `vigil serve ingest`)
"""
from __future__ import annotations

import asyncio

from services.core import serving
from services.core.config import ConfigError, Settings
from services.core.httpserver import start_http
from services.core.integration import ProfileError
from services.core.logging import configure, get_logger
from services.core.tenancy import Registry, TenantError
from services.ingest import profiles
from services.ingest.config import IngestSettings
from services.ingest.mllp.server import MllpServer
from services.ingest.poll.runner import PollRunner
from services.ingest.receiver.app import ReceiverContext, create_app
from services.ingest.liveness import Liveness
from services.ingest.receiver.watchdog import Watchdog
from services.ingest.runtime import runtime

log = get_logger("ingest")


async def serve(settings: Settings | None = None, ingest: IngestSettings | None = None,
                stop: asyncio.Event | None = None) -> None:
    if settings is None:
        settings = Settings.from_env()
        configure(settings.log_level)
    ingest = ingest or IngestSettings.from_env()
    stop = serving.stop_on_signals(stop)
    try:
        registry = Registry.load(settings.tenants_file)
    except (TenantError, ProfileError) as exc:
        raise ConfigError(str(exc)) from None
    profiles.check(registry, ingest)  # a profile ingest cannot honour stops it here, naming the setting
    async with runtime(settings, registry) as rt:
        # Checked before anything listens: a tenant's polling settings that cannot be honoured stop start-up.
        poller = PollRunner(rt.registry, rt.pools, rt.publishers, rt.directory) if ingest.poll else None
        mllp = MllpServer(rt.pipeline, ingest.mllp_host, ingest.mllp_port, ingest.ssl_context(), ingest.mllp_limits)
        await mllp.start()
        liveness = Liveness()
        app = create_app(ReceiverContext(rt.registry, rt.secrets, rt.handler, liveness=liveness))
        try:
            http = await start_http(app, ingest.http_host, ingest.http_port, certfile=ingest.tls_cert,
                                    keyfile=ingest.tls_key)
        except BaseException:
            await mllp.stop()
            raise
        watchdog = Watchdog(rt.registry, rt.pools, rt.handler, rt.directory)
        if ingest.watchdog:
            watchdog.start()
        else:  # no periodic catch-up, but R4 checkpoints still start now
            await watchdog.prime()
        if poller is not None:
            poller.start()
        liveness.add("mllp", lambda: None if mllp.serving else "listener closed")
        liveness.add("publishing", rt.publishers.health.problem)
        if ingest.watchdog:
            liveness.add("watchdog", watchdog.problem)
        if poller is not None:
            liveness.add("polling", poller.problem)
        log.info("ingest.started", mllp_port=mllp.port, http_port=http.port,
                 polled_tenants=len(poller.pollers) if poller is not None else 0)
        try:
            await stop.wait()
        finally:
            if poller is not None:
                await poller.stop()
            await watchdog.stop()
            await http.stop()
            await mllp.stop()


if __name__ == "__main__":
    serving.main(serve)
