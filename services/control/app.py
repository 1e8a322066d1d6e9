"""The control service: wiring and start-up.

    vigil serve control            # or: python -m services.commands.control_service

Both wire the monitor's promotion gates into SetMode (the command layer does the wiring: this
package imports no other service). Started any other way, with no ``promotion_checks``, the
service refuses every promotion over SetMode unless it is forced with a reason; demotions and
kill switches always work.

Serves gRPC (``vigil.v1.Control`` + health + reflection) on VIGIL_GRPC_CONTROL_ADDR (default
127.0.0.1:50063; 0.0.0.0:50051 in the manifests), runs the dead-letter indexer for every
tenant of the registry, and serves the web console on VIGIL_CONTROL_CONSOLE_ADDR (default
127.0.0.1:8090; the manifests set 0.0.0.0:8090; ``off`` disables it). Admits operator and platform-admin credentials only.
With VIGIL_AUDIT_CHECKPOINT_DIR set, it also exports a signed audit checkpoint every
VIGIL_AUDIT_CHECKPOINT_INTERVAL_S seconds (``services.core.audit_checkpoints``).
"""
from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence

import asyncpg

from services.control import modes as control_modes
from services.control import store
from services.control.authz import CONTROL_ROLES, Authz
from services.control.indexer import DlqIndexer
from services.control.replay import Replayer
from services.control.servicer import ControlServicer
from services.core import audit, audit_checkpoints, crypto, modes
from services.core.bus.publisher import make_producer
from services.core.config import ConfigError, Settings
from services.core.crypto import Keyring
from services.core.db import create_pool, ensure_schema
from services.core import serving
from services.core.grpc.server import RunningServer, serve as grpc_serve, start_server
from services.core.grpc.settings import GrpcSettings
from services.core.revocation import DenyList
from services.core.logging import configure, get_logger
from services.core.secrets import SecretSettings
from services.core.tenancy import Registry
from services.core.tenantdb import TenantPools
from vigil.v1 import control_pb2, control_pb2_grpc

log = get_logger("vigil.control")
SERVICE_NAME = control_pb2.DESCRIPTOR.services_by_name["Control"].full_name
DEFAULT_CONSOLE_ADDR = "127.0.0.1:8090"


async def migrate(admin: asyncpg.Pool) -> None:
    """Every table the control service reads or writes (idempotent)."""
    for module, steps in ((crypto.SCHEMA_MODULE, crypto.SCHEMA_STEPS), (audit.SCHEMA_MODULE, audit.SCHEMA_STEPS),
                          (store.MODULE, store.STEPS), (control_modes.SCHEMA_MODULE, control_modes.SCHEMA_STEPS)):
        await ensure_schema(admin, module, steps)


def registry_tenants(settings: Settings) -> Callable[[], list[str]]:
    def tenants() -> list[str]:
        path = settings.tenants_file
        return [t.id for t in Registry.load(path)] if path.exists() else []
    return tenants


@dataclass
class ControlApp:
    server: RunningServer
    indexer: DlqIndexer
    servicer: ControlServicer
    pools: TenantPools
    admin: asyncpg.Pool
    producer: object
    _stop: asyncio.Event
    _task: asyncio.Task | None
    _checkpoint_task: asyncio.Task | None = None

    @property
    def port(self) -> int:
        return self.server.port

    async def stop(self) -> None:
        self._stop.set()
        for task in (self._task, self._checkpoint_task):
            if task is not None:
                await task
        await self.server.stop()
        await self.indexer.stop()
        await self.producer.stop()
        await self.pools.close()
        await self.admin.close()


async def start(settings: Settings, grpc_settings: GrpcSettings, *, address: str | None = None,
                secrets: SecretSettings | None = None, tenants: Callable[[], Iterable[str]] | None = None,
                background_index: bool = True,
                checkpoints: audit_checkpoints.CheckpointSettings | None = None,
                promotion_checks: Sequence[tuple[str, modes.PromotionCheck]] | None = None) -> ControlApp:
    secrets = secrets or SecretSettings.from_env()
    checkpoints = checkpoints or audit_checkpoints.CheckpointSettings.from_env()
    admin = await create_pool(settings, min_size=1, max_size=4)
    await migrate(admin)
    pools = TenantPools(settings, secrets)
    keyring = Keyring(pools, secrets)
    indexer = DlqIndexer(settings, pools, admin, keyring, tenants or registry_tenants(settings))
    await indexer.start()
    producer = make_producer(settings)
    await producer.start()
    authz = Authz(pools, admin)
    writer = control_modes.ModeAdmin(pools, settings.tenants_file, promotion_checks=promotion_checks)
    servicer = ControlServicer(pools, admin, keyring, indexer, Replayer(pools, keyring, producer), writer, authz)
    server = await start_server([(control_pb2_grpc.add_ControlServicer_to_server, servicer, SERVICE_NAME)],
                                grpc_settings, address or grpc_settings.address("control"),
                                allowed_roles=CONTROL_ROLES, on_denied=authz.on_grpc_denied,
                                revocations=await DenyList(settings).start())
    stop = asyncio.Event()
    task = asyncio.create_task(indexer.run(stop)) if background_index else None
    checkpoint_task = (asyncio.create_task(audit_checkpoints.run_schedule(admin, checkpoints, stop, secrets))
                       if checkpoints.directory is not None else None)
    return ControlApp(server, indexer, servicer, pools, admin, producer, stop, task, checkpoint_task)


def console_address(source: Mapping[str, str]) -> tuple[str, int] | None:
    raw = source.get("VIGIL_CONTROL_CONSOLE_ADDR") or DEFAULT_CONSOLE_ADDR
    if raw == "off":
        return None
    host, sep, port = raw.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"VIGIL_CONTROL_CONSOLE_ADDR={raw!r}: expected HOST:PORT or off")
    return host, int(port)


async def serve(env: Mapping[str, str] | None = None,
                promotion_checks: Sequence[tuple[str, modes.PromotionCheck]] | None = None) -> None:
    source = os.environ if env is None else env
    settings = Settings.from_env(source)
    configure(settings.log_level)
    grpc_settings = GrpcSettings.from_env(source)
    console_at = console_address(source)
    if promotion_checks is None:
        log.warning("control.no_promotion_gate", detail="SetMode promotions are refused unless forced")

    async def start_all() -> serving.Running:
        app = await start(settings, grpc_settings, promotion_checks=promotion_checks)
        if console_at is None:
            return app
        from services.control.console.app import ConsoleSettings, serve_console

        target = f"127.0.0.1:{app.port}"
        try:
            console = await serve_console(ConsoleSettings.from_env(source, control_target=target), grpc_settings,
                                          *console_at)
        except BaseException:
            await app.stop()
            raise
        return serving.Together(app, console)

    await grpc_serve("control", start_all, console=console_at)


if __name__ == "__main__":  # without the gates: promotions refused (see services.commands.control_service)
    if os.environ.get("VIGIL_METRICS_PORT"):
        from prometheus_client import start_http_server

        start_http_server(int(os.environ["VIGIL_METRICS_PORT"]))
    asyncio.run(serve())
