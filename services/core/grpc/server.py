"""A gRPC server with health and reflection always on, and the serve loop of a gRPC service process."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Awaitable, Callable, Sequence

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.core import errors, serving
from services.core.grpc.auth import DEFAULT_ROLES, AuthInterceptor, DenialHook
from services.core.grpc.settings import MESSAGE_OPTIONS, GrpcSettings
from services.core.logging import get_logger

if TYPE_CHECKING:
    from services.core.revocation import DenyList

log = get_logger("vigil.grpc")


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    health_server: grpc.aio.Server | None = None
    health_port: int | None = None
    revocations: "DenyList | None" = None

    async def stop(self, grace: float | None = 1.0) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        if self.health_server is not None:
            await self.health_server.stop(grace)
        if self.revocations is not None:
            await self.revocations.close()


#: (add_XServicer_to_server, servicer instance, full service name from the pb2 DESCRIPTOR)
ServiceBinding = tuple[Callable, object, str]


async def start_server(bindings: Sequence[ServiceBinding], settings: GrpcSettings, address: str,
                       allowed_roles: Sequence[str] = DEFAULT_ROLES, health_address: str | None = None,
                       on_denied: DenialHook | None = None, revocations: "DenyList | None" = None) -> RunningServer:
    """Start serving ``bindings`` on ``address`` (port 0 picks a free port) with health and reflection.

    ``revocations``: the token deny list checked on every call (``services.core.revocation``);
    the server closes it when it stops.

    ``health_address`` (default: the host of ``address`` with VIGIL_GRPC_HEALTH_PORT, when set)
    additionally serves only grpc.health.v1, in plaintext, from the same health servicer."""
    server = grpc.aio.server(interceptors=[AuthInterceptor(settings.tokens, allowed_roles, on_denied, revocations)],
                             options=MESSAGE_OPTIONS)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = []
    for add, servicer, name in bindings:
        add(servicer, server)
        names.append(name)
    reflection.enable_server_reflection(
        [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME], server)
    credentials = settings.server_credentials()
    port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    if port == 0:
        raise errors.FatalError("could not bind the gRPC address", code="bind_failed")
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    for name in names:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    if health_address is None and settings.health_port is not None:
        health_address = f"{address.rpartition(':')[0]}:{settings.health_port}"
    health_server = health_port = None
    if health_address is not None:
        health_server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, health_server)
        health_port = health_server.add_insecure_port(health_address)
        await health_server.start()
    log.info("grpc.serving", port=port, health_port=health_port, services=names, tls=settings.tls)
    return RunningServer(server, port, health_servicer, health_server, health_port, revocations)


async def serve(name: str, start: Callable[[], Awaitable["serving.Running"]], stop: asyncio.Event | None = None,
                **fields) -> None:
    """The serve loop of a gRPC service process (``services.core.serving.run``): ``start()`` returns
    once its server is SERVING (``start_server``); on SIGINT/SIGTERM its health turns NOT_SERVING and
    in-flight calls get the grace period before the server stops."""
    await serving.run(name, start, stop, **fields)
