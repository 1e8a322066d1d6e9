"""An HTTP (ASGI) service in this event loop, and the serve loop of an HTTP service process.

    running = await start_http(app, "127.0.0.1", 0)      # returns once it listens; port 0: a free one
    ... running.port ...
    await running.stop()                                 # stops accepting, drains open connections

    await serve("cdshooks", app, host, port)            # the process: until SIGINT/SIGTERM

The socket is bound here, so a port in use fails ``start_http`` at once (``FatalError``
``bind_failed``) and port 0 reports the port it got. Process signals belong to
``services.core.serving``: uvicorn's own handlers are not installed, so every service stops the
same way whatever it hosts (an HTTP server beside a gRPC server, an MLLP listener, ...).
"""
from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from services.core import errors, serving

#: Seconds ``start_http`` waits for the server to listen before it gives up.
START_TIMEOUT_S = 30.0
_STARTED_POLL_S = 0.01


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: the process's serve loop owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield


@dataclass
class RunningHttp:
    server: uvicorn.Server
    task: asyncio.Task
    port: int

    async def stop(self) -> None:
        self.server.should_exit = True
        await self.task


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise errors.FatalError(f"could not bind the HTTP address {host}:{port} ({exc.strerror})",
                                code="bind_failed") from None
    return sock


async def start_http(app: Any, host: str, port: int, *, certfile: Path | str | None = None,
                     keyfile: Path | str | None = None, lifespan: str = "off") -> RunningHttp:
    """Serve ``app`` on ``host:port``; returns once the server listens (its lifespan startup done).

    ``certfile``/``keyfile``: serve HTTPS. ``lifespan="on"`` for an app with startup/shutdown hooks."""
    sock = _bind(host, port)
    tls = {"ssl_certfile": str(certfile), "ssl_keyfile": str(keyfile)} if certfile else {}
    server = _Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan=lifespan, **tls))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    deadline = asyncio.get_running_loop().time() + START_TIMEOUT_S
    try:
        while not server.started:
            if task.done():
                await task  # raises what stopped it
                raise errors.FatalError("the HTTP server stopped while starting", code="start_failed")
            if asyncio.get_running_loop().time() > deadline:
                raise errors.FatalError("the HTTP server did not start in time", code="start_timeout")
            await asyncio.sleep(_STARTED_POLL_S)
    except BaseException:
        server.should_exit = True
        if not task.done():
            task.cancel()
        sock.close()
        raise
    return RunningHttp(server, task, sock.getsockname()[1])


async def serve(name: str, app: Any, host: str, port: int, stop: asyncio.Event | None = None,
                **options: Any) -> None:
    """The serve loop of an HTTP service process (``services.core.serving.run``)."""
    await serving.run(name, lambda: start_http(app, host, port, **options), stop, host=host)
