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


def test_outbound_clients_share_one_verifying_tls_context():
    import ssl

    from services.core.httpclient import async_client, tls_context

    first, second = async_client(), async_client(timeout=3)
    contexts = {id(c._transport._pool._ssl_context) for c in (first, second)}  # noqa: SLF001
    assert contexts == {id(tls_context())}
    assert tls_context().verify_mode == ssl.CERT_REQUIRED and tls_context().check_hostname
    own = ssl.create_default_context()
    assert async_client(verify=own)._transport._pool._ssl_context is own  # noqa: SLF001  (a caller's own is kept)


def test_outbound_clients_connect_through_asyncio_streams_with_httpx_unchanged_above():
    from services.core import httpnet
    from services.core.httpclient import async_client, tls_context

    client = async_client(timeout=3)
    pool = client._transport._pool  # noqa: SLF001
    assert isinstance(client._transport, httpx.AsyncHTTPTransport)  # noqa: SLF001
    assert pool._network_backend is httpnet.BACKEND and pool._ssl_context is tls_context()  # noqa: SLF001
    own = httpx.MockTransport(lambda request: httpx.Response(204))
    assert async_client(transport=own)._transport is own  # noqa: SLF001  (a caller's transport is kept)


async def test_the_asyncio_backend_reuses_keep_alive_connections_and_sees_a_server_close():
    """Requests share a kept-alive connection; one the server closed while idle is not reused (no error),
    and a refused connection or a timeout is httpx's own exception."""
    from services.core.httpclient import async_client

    served: list[int] = []
    close_next = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served.append(1)
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            if b"/slow" in head:
                await asyncio.sleep(1)
            body = b'{"ok": true}'
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                         % (len(body), body))
            await writer.drain()
            if close_next.is_set():
                await asyncio.sleep(0.05)
                writer.close()   # the server drops the idle keep-alive connection
                return

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with async_client(timeout=httpx.Timeout(5, read=0.3)) as http:
            for _ in range(3):
                assert (await http.get(f"http://127.0.0.1:{port}/a")).json() == {"ok": True}
            assert len(served) == 1                                    # one connection, kept alive
            close_next.set()
            await http.get(f"http://127.0.0.1:{port}/b")
            await asyncio.sleep(0.2)                                   # the close arrives while idle
            close_next.clear()
            assert (await http.get(f"http://127.0.0.1:{port}/c")).status_code == 200
            assert len(served) == 2                                    # a new connection, no error
            with pytest.raises(httpx.ReadTimeout):
                await http.get(f"http://127.0.0.1:{port}/slow")
    finally:
        server.close()
        await server.wait_closed()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    async with async_client(timeout=3) as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(f"http://127.0.0.1:{free}/")


def _self_signed(tmp_path, host: str):
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    return tmp_path / "cert.pem", tmp_path / "key.pem"


async def test_the_asyncio_backend_speaks_tls_and_verifies_the_server(tmp_path):
    import ssl

    from services.core.httpclient import async_client

    cert, key = _self_signed(tmp_path, "localhost")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    trusting = ssl.create_default_context(cafile=str(cert))
    try:
        async with async_client(verify=trusting, timeout=5) as http:
            for _ in range(2):
                assert (await http.get(f"https://localhost:{port}/")).text == "ok"
        async with async_client(timeout=5) as http:                    # the shared context does not trust it
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await http.get(f"https://localhost:{port}/")
        async with async_client(verify=trusting, timeout=5) as http:  # the certificate names another host
            with pytest.raises(httpx.ConnectError):
                await http.get(f"https://127.0.0.1:{port}/")
    finally:
        server.close()
        await server.wait_closed()
