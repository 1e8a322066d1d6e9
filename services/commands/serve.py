"""`vigil serve <service>`: run one gRPC service in the foreground until SIGINT/SIGTERM.

Equivalent to ``python -m services.<service>.app``; additionally exposes Prometheus metrics on
VIGIL_METRICS_PORT when it is set.
"""
from __future__ import annotations

import asyncio
import importlib
import os

import typer

app = typer.Typer(help="Run a gRPC service (inference, tools).", no_args_is_help=True)

#: service name -> module with ``async def serve()``. One entry per gRPC service.
SERVICES: dict[str, str] = {
    "inference": "services.inference.app",
    "tools": "services.tools.app",
    "ingest": "services.ingest.app",
    "control": "services.control.app",
    "cdshooks": "services.cdshooks.app",
}


def _control_kwargs() -> dict:
    from services.commands.control_service import serve_kwargs

    return serve_kwargs()


#: service name -> what the command layer wires into its ``serve()`` (what the service may not import).
SERVE_KWARGS = {"control": _control_kwargs}


def run(service: str) -> None:
    from services.core.config import ConfigError

    module = importlib.import_module(SERVICES[service])
    raw_port = os.environ.get("VIGIL_METRICS_PORT") or ""
    try:
        if raw_port:
            if not raw_port.isdigit() or not 0 < int(raw_port) < 65536:
                raise ConfigError(f"VIGIL_METRICS_PORT={raw_port!r}: expected a port number")
            from prometheus_client import start_http_server

            start_http_server(int(raw_port))
        kwargs = SERVE_KWARGS[service]() if service in SERVE_KWARGS else {}
        asyncio.run(module.serve(**kwargs))
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)


def _command(service: str):
    def command() -> None:
        run(service)
    command.__doc__ = f"Serve the {service} gRPC service."
    return command


for _service in SERVICES:
    app.command(_service)(_command(_service))
