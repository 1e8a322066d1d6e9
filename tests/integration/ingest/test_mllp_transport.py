"""MLLP transport: TLS with a self-signed CA, idle timeout, maximum message size, connection limit."""
from __future__ import annotations

import asyncio
import ssl

import pytest
from hl7.mllp import open_hl7_connection

from services.ingest.hl7.parse import parse
from services.ingest.mllp.server import CLOSED, MllpLimits, MllpServer
from tests.fixtures.tls import make_self_signed

MESSAGE = b"MSH|^~\\&|A|XYZHOSPITAL|B|C|20240101||ADT^A08|T{n}|P|2.5\rPID|1||M1"


async def ack_of(reader, writer, n: int) -> str:
    writer.writeblock(MESSAGE.replace(b"{n}", str(n).encode()))
    await writer.drain()
    return parse(await asyncio.wait_for(reader.readblock(), 10)).get("MSA", 1)


def closed(reason: str) -> float:
    return CLOSED.labels(reason)._value.get()


@pytest.fixture
async def limited(ingest):
    servers = []

    async def start(**limits):
        srv = MllpServer(ingest.pipeline, "127.0.0.1", 0, limits=MllpLimits(**limits))
        await srv.start()
        servers.append(srv)
        return srv
    yield start
    for srv in servers:
        await srv.stop()


async def test_tls_with_a_self_signed_ca(ingest, tmp_path):
    cert, key = make_self_signed(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    srv = MllpServer(ingest.pipeline, "127.0.0.1", 0, ssl_context=server_ctx)
    await srv.start()
    try:
        client_ctx = ssl.create_default_context(cafile=str(cert))
        reader, writer = await open_hl7_connection("127.0.0.1", srv.port, encoding="utf-8", ssl=client_ctx,
                                                   server_hostname="localhost")
        assert await ack_of(reader, writer, 1) == "AA"
        writer.close()
        # A client that does not trust the CA cannot talk to the listener.
        with pytest.raises(ssl.SSLError):
            await open_hl7_connection("127.0.0.1", srv.port, encoding="utf-8", ssl=ssl.create_default_context(),
                                      server_hostname="localhost")
        # Plain MLLP to a TLS port gets no ACK.
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        writer.write(b"\x0b" + MESSAGE.replace(b"{n}", b"2") + b"\x1c\r")
        await writer.drain()
        assert b"MSA|AA" not in await asyncio.wait_for(reader.read(4096), 10)
        writer.close()
    finally:
        await srv.stop()


async def test_idle_connection_is_closed(limited):
    srv = await limited(idle_timeout_s=0.3)
    before = closed("idle")
    reader, writer = await open_hl7_connection("127.0.0.1", srv.port, encoding="utf-8")
    assert await ack_of(reader, writer, 3) == "AA"
    assert await asyncio.wait_for(reader.read(10), 10) == b""  # closed by the listener once idle
    assert closed("idle") == before + 1
    writer.close()


async def test_message_over_the_size_limit_gets_ar_and_close(limited):
    srv = await limited(max_message_bytes=2048)
    before = closed("too_large")
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    big = MESSAGE.replace(b"{n}", b"4") + b"\rNTE|1||" + b"x" * 4096
    writer.write(b"\x0b" + big + b"\x1c\r")
    await writer.drain()
    data = await asyncio.wait_for(reader.read(4096), 10)
    assert b"MSA|AR" in data and b"larger than 2048 bytes" in data
    assert await asyncio.wait_for(reader.read(10), 10) == b""
    assert closed("too_large") == before + 1
    writer.close()


async def test_connections_beyond_the_limit_are_refused_and_the_others_keep_working(limited):
    srv = await limited(max_connections=2)
    before = closed("limit")
    first = await open_hl7_connection("127.0.0.1", srv.port, encoding="utf-8")
    second = await open_hl7_connection("127.0.0.1", srv.port, encoding="utf-8")
    assert await ack_of(*first, 5) == "AA" and await ack_of(*second, 6) == "AA"
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    assert await asyncio.wait_for(reader.read(10), 10) == b""
    assert closed("limit") == before + 1
    assert srv.connections == 2
    assert await ack_of(*first, 7) == "AA"
    for _, w in (first, second):
        w.close()
    writer.close()
