"""The serve loop of a service process, one for every gRPC and HTTP service.

    async def serve(env=None):
        settings = Settings.from_env(env)
        await serving.run("tools", lambda: start(settings, ...))     # gRPC: grpc.server.serve
    if __name__ == "__main__":
        serving.main(serve)

``run`` starts the service (``start()`` returns once it is ready: listening, health SERVING),
logs ``<name>.started`` with its port, waits for SIGINT/SIGTERM (or ``stop``, for tests and
processes that host several services) and stops it gracefully (``Running.stop``: health
NOT_SERVING and in-flight calls finished, or the HTTP server's connections drained). ``main``
is the ``python -m`` entry point: a ``ConfigError`` exits 2 with its message, no traceback.
``services.core.grpc.server.serve`` and ``services.core.httpserver.serve`` are this loop for
their kind of server; stages have theirs in ``services.core.bus.service``.
"""
from __future__ import annotations

import asyncio
import signal
from typing import Any, Awaitable, Callable, Protocol

from services.core.config import ConfigError
from services.core.logging import get_logger

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Running(Protocol):
    """A started service: the port it listens on, and a graceful stop."""

    port: int

    async def stop(self) -> None: ...


def stop_on_signals(stop: asyncio.Event | None = None) -> asyncio.Event:
    """An event SIGINT and SIGTERM set (``stop`` if given). Where the loop cannot take signal
    handlers (not the main thread, e.g. a test's server thread) only ``stop`` ends the service."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in SIGNALS:
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError, ValueError):
            # not the main thread (a test's server thread) or no signal support: ``stop`` alone ends it
            get_logger("vigil.serving").debug("serving.no_signal_handlers", signal=sig.name)
            break
    return stop


async def run(name: str, start: Callable[[], Awaitable[Running]], stop: asyncio.Event | None = None,
              **fields: Any) -> None:
    """Start a service, serve until a signal (or ``stop``), stop it gracefully."""
    log = get_logger(f"vigil.{name}")
    stop = stop_on_signals(stop)
    running = await start()
    log.info(f"{name}.started", port=running.port, **fields)
    try:
        await stop.wait()
    finally:
        await running.stop()
        log.info(f"{name}.stopped")


def main(serve: Callable[[], Awaitable[None]]) -> None:
    """Entry point of ``python -m services.<service>.app``: exit 2 with a message on bad settings."""
    try:
        asyncio.run(serve())
    except ConfigError as exc:
        print(f"error: {exc}", flush=True)
        raise SystemExit(2)


class Together:
    """Services one process starts one after the other: the port of the first, stopped in reverse order."""

    def __init__(self, *parts: Running):
        self.parts = parts

    @property
    def port(self) -> int:
        return self.parts[0].port

    async def stop(self) -> None:
        for part in reversed(self.parts):
            await part.stop()
