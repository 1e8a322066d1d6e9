"""The shared HTTP plumbing: one exception -> status mapping, one serve loop, one route-table shape."""
from __future__ import annotations

import asyncio
import signal
import socket

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from services.core import errors, httperrors, httpserver, serving
from services.core.routes import Route


@pytest.mark.parametrize("exc,status", [
    (errors.UnauthenticatedError("x"), 401), (errors.PermissionDeniedError("x"), 403),
    (errors.NotFoundError("x"), 404), (errors.ConflictError("x"), 409), (errors.ValidationError("x"), 400),
    (errors.RetryableError("x"), 503), (errors.FatalError("x"), 500), (TimeoutError(), 503),
    (ConnectionResetError(), 503), (asyncpg.TooManyConnectionsError("x"), 503), (RuntimeError("bug"), 500),
])
def test_every_error_has_one_status(exc, status):
    answer = httperrors.failure(exc)
    assert answer.status == status
    assert answer.unexpected == isinstance(exc, RuntimeError)


def test_a_service_row_comes_before_the_shared_table():
    rows = ((asyncpg.DeadlockDetectedError, 409),)
    assert httperrors.failure(asyncpg.DeadlockDetectedError("x"), rows).status == 409
    assert httperrors.failure(asyncpg.DeadlockDetectedError("x")).status == 503  # retryable without the row


def _app() -> FastAPI:
    app = FastAPI()

    async def refused():
        raise errors.PermissionDeniedError("not yours", code="tenant_mismatch")

    async def down():
        raise ConnectionRefusedError()

    async def ok():
        return {"ok": True}

    for path, methods, handler in [Route("/refused", ("GET",), refused), Route("/down", ("GET",), down),
                                   Route("/ok", ("GET",), ok)]:
        app.add_api_route(path, handler, methods=list(methods))
    httperrors.install(app, lambda _request, f: JSONResponse({"error": f.error.code}, status_code=f.status),
                       log_event="test.request_failed")
    return app


async def test_start_http_serves_maps_errors_and_stops():
    running = await httpserver.start_http(_app(), "127.0.0.1", 0)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{running.port}") as http:
            assert (await http.get("/ok")).json() == {"ok": True}           # listening when start_http returns
            refused = await http.get("/refused")
            assert refused.status_code == 403 and refused.json() == {"error": "tenant_mismatch"}
            down = await http.get("/down")
            assert down.status_code == 503 and down.json() == {"error": "connection"}
    finally:
        await running.stop()
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as http:
            await http.get(f"http://127.0.0.1:{running.port}/ok")


async def test_a_port_in_use_fails_at_start():
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        with pytest.raises(errors.FatalError, match="could not bind"):
            await httpserver.start_http(_app(), "127.0.0.1", taken.getsockname()[1])
    finally:
        taken.close()


async def test_the_serve_loop_stops_gracefully_on_sigterm():
    """SIGTERM (to this process) ends ``serve``; the server was listening until then and is closed after."""
    ports: list[int] = []
    original = httpserver.start_http

    async def start(*args, **kwargs):
        running = await original(*args, **kwargs)
        ports.append(running.port)
        return running

    httpserver.start_http = start
    task = asyncio.create_task(httpserver.serve("test", _app(), "127.0.0.1", 0))
    try:
        for _ in range(500):
            if ports:
                break
            await asyncio.sleep(0.01)
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"http://127.0.0.1:{ports[0]}/ok")).status_code == 200
        signal.raise_signal(signal.SIGTERM)
        await asyncio.wait_for(task, 10)
    finally:
        httpserver.start_http = original
        for sig in serving.SIGNALS:
            asyncio.get_running_loop().remove_signal_handler(sig)
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as http:
            await http.get(f"http://127.0.0.1:{ports[0]}/ok")


def test_every_http_service_route_table_has_one_shape():
    from services.cdshooks.app import ROUTES as CDS_ROUTES
    from services.ehr.routes import ROUTES as EHR_ROUTES

    for table in (CDS_ROUTES, EHR_ROUTES):
        assert table and all(isinstance(r, Route) and r.path.startswith("/") and r.methods for r in table)


def test_no_service_hand_rolls_its_serve_loop():
    """Signal handling and uvicorn servers live in core/serving.py and core/httpserver.py only."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    allowed = {root / "services/core/serving.py", root / "services/core/httpserver.py"}
    found = [f"{path.relative_to(root)}: {needle}" for path in sorted((root / "services").rglob("*.py"))
             if path not in allowed
             for needle in ("add_signal_handler", "uvicorn.Server(", "uvicorn.run(", "uvicorn.Config(")
             if needle in path.read_text(encoding="utf-8")]
    assert found == []

