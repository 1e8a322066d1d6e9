"""The outbound transport (``services.core.httptransport``) against a real HTTP server on loopback:
what goes on the wire is what httpx set, errors are httpx's, bodies stream both ways."""
from __future__ import annotations

import asyncio
import gzip
import json
import socket

import httpx
import pytest
from aiohttp import web

from services.core.httpclient import async_client, tls_context
from services.core.httptransport import KEEPALIVE_S, AiohttpTransport

BIG = 3 * 1024 * 1024


async def _echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.json_response({"method": request.method, "path": request.path_qs, "length": len(body),
                              "headers": [[k, v] for k, v in request.headers.items()]})


async def _gzip(_request: web.Request) -> web.Response:
    return web.Response(body=gzip.compress(b'{"ok": true}'),
                        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})


async def _big(_request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/fhir+ndjson"})
    await response.prepare(_request)
    line = b'{"resourceType":"Patient"}\n'
    for _ in range(BIG // len(line)):
        await response.write(line)
    await response.write_eof()
    return response


async def _redirect(_request: web.Request) -> web.Response:
    raise web.HTTPFound("/echo")


async def _slow(_request: web.Request) -> web.Response:
    await asyncio.sleep(2)
    return web.Response(text="late")


async def _cut(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Length": "1000"})
    await response.prepare(request)
    await response.write(b"x" * 10)
    request.transport.close()  # the body stops after 10 of 1000 bytes
    return response


@pytest.fixture
async def server():
    app = web.Application()
    app.router.add_route("*", "/echo", _echo)
    for path, handler in (("/gzip", _gzip), ("/big", _big), ("/redirect", _redirect), ("/slow", _slow),
                          ("/cut", _cut)):
        app.router.add_get(path, handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # noqa: SLF001
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_the_wire_carries_httpx_headers_and_body_only(server):
    async with async_client(headers={"Accept": "application/fhir+json"}) as client:
        assert isinstance(client._transport, AiohttpTransport)  # noqa: SLF001
        body = json.dumps({"resourceType": "Bundle", "entry": []}).encode()
        response = await client.post(f"{server}/echo?_count=2&x=a%20b", content=body,
                                     headers={"Content-Type": "application/fhir+json"})
    assert response.status_code == 200 and response.http_version == "HTTP/1.1"
    seen = response.json()
    headers = {k.lower(): v for k, v in seen["headers"]}
    assert seen["method"] == "POST" and seen["path"] == "/echo?_count=2&x=a%20b"
    assert seen["length"] == len(body) and headers["content-length"] == str(len(body))
    assert headers["accept"] == "application/fhir+json" and headers["content-type"] == "application/fhir+json"
    assert headers["user-agent"].startswith("python-httpx/")  # not aiohttp's
    assert len([k for k, _ in seen["headers"] if k.lower() == "content-type"]) == 1
    assert "cookie" not in headers


async def test_a_get_has_no_body_and_no_content_type(server):
    async with async_client() as client:
        seen = (await client.get(f"{server}/echo")).json()
    headers = {k.lower() for k, _ in seen["headers"]}
    assert seen["length"] == 0 and "content-type" not in headers and "transfer-encoding" not in headers


async def test_compressed_answers_are_decoded_by_httpx(server):
    async with async_client() as client:
        response = await client.get(f"{server}/gzip")
    assert response.headers["content-encoding"] == "gzip" and response.json() == {"ok": True}


async def test_redirects_are_httpx_s_choice(server):
    async with async_client() as client:
        assert (await client.get(f"{server}/redirect")).status_code == 302
    async with async_client(follow_redirects=True) as client:
        assert (await client.get(f"{server}/redirect")).json()["path"] == "/echo"


async def test_bodies_stream_both_ways(server):
    sent = 0

    async def upload():
        nonlocal sent
        for _ in range(64):
            sent += 16 * 1024
            yield b"y" * (16 * 1024)

    async with async_client() as client:
        assert (await client.post(f"{server}/echo", content=upload())).json()["length"] == sent == 64 * 16 * 1024
        received, largest = 0, 0
        async with client.stream("GET", f"{server}/big") as response:
            async for chunk in response.aiter_raw():
                received += len(chunk)
                largest = max(largest, len(chunk))
    assert received >= BIG - 64 and largest <= 64 * 1024  # read in pieces, never whole


async def test_errors_are_httpx_errors(server):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    async with async_client(timeout=httpx.Timeout(5.0, read=0.3)) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{closed}/x")
        with pytest.raises(httpx.ReadTimeout):
            await client.get(f"{server}/slow")
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(f"{server}/cut")
        assert (await client.get(f"{server}/echo")).status_code == 200  # the client is still usable


async def test_idle_connections_are_dropped_before_servers_drop_them(server):
    transport = AiohttpTransport(limits=httpx.Limits(keepalive_expiry=30))
    assert transport._keepalive == KEEPALIVE_S < 5  # noqa: SLF001  (uvicorn's and Apache's 5 s)
    async with httpx.AsyncClient(transport=transport) as client:
        assert (await client.get(f"{server}/echo")).status_code == 200
        assert transport._session.connector._keepalive_timeout == KEEPALIVE_S  # noqa: SLF001


def test_verification_stays_on_with_the_shared_context():
    import ssl

    transport = async_client()._transport  # noqa: SLF001
    assert transport._ssl is tls_context() and tls_context().verify_mode == ssl.CERT_REQUIRED  # noqa: SLF001
    own = ssl.create_default_context()
    assert async_client(verify=own)._transport._ssl is own  # noqa: SLF001


async def test_outbound_clients_keep_no_cookies():
    """A Set-Cookie from an endpoint is neither stored nor sent back; asking for cookies is an error."""
    import httpx
    from services.core.httpclient import async_client

    seen: list[str | None] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("cookie"))
        return httpx.Response(200, headers={"set-cookie": "session=abc; Path=/"}, json={})

    async with async_client(transport=httpx.MockTransport(answer)) as client:
        await client.get("http://ehr.test/fhir/metadata")
        await client.get("http://ehr.test/fhir/metadata")
        assert len(client.cookies) == 0
        with pytest.raises(TypeError):
            client.cookies.set("session", "abc")
        with pytest.raises(TypeError):
            client.cookies = {"session": "abc"}
    assert seen == [None, None]
    with pytest.raises(TypeError):
        async_client(cookies={"session": "abc"})
    async with async_client(transport=httpx.MockTransport(answer), keep_cookies=True) as browser:  # a person's stand-in
        await browser.get("http://ehr.test/inbox/login")
        await browser.get("http://ehr.test/inbox/tasks")
    assert seen[-1] == "session=abc"
