"""httpcore's network layer on plain asyncio streams, for the process's outbound HTTP clients.

httpx runs its connections through anyio on asyncio: every read and write enters a cancel scope,
and before each request the pool asks every pooled connection whether the server closed it
(``get_extra_info("is_readable")``), which anyio answers by building its whole attribute table
and polling the socket. On a service that makes a few small requests per event that plumbing
is a large share of its CPU. This backend does the same work on asyncio's own streams:

- reads and writes: ``asyncio.StreamReader`` / ``StreamWriter`` (a write goes to the transport's
  buffer; only a full buffer waits), ``asyncio.timeout`` for the request's timeouts;
- "did the server close this idle connection?": the event loop reads every socket as data
  arrives, so a close is already in the stream (EOF or an error) - no system call per check;
- TLS: ``StreamWriter.start_tls`` with the caller's ``SSLContext`` (certificate verification as
  configured; the hostname is checked by the context);
- errors map to httpcore's (``ConnectError``, ``ReadTimeout``...), which httpx maps to its own
  exactly as with the default backend.

Everything above the socket - HTTP/1.1 parsing (h11), the connection pool, keep-alive, limits,
proxies from the environment - is httpx/httpcore unchanged. ``use_asyncio(transport)`` points an
``httpx.AsyncHTTPTransport``'s connection pool at this backend (``httpclient.async_client`` does
it for every client it makes); ``transport(**kwargs)`` makes one so.
"""
from __future__ import annotations

import asyncio
import ssl
import typing

import httpcore
import httpx

_READ_ERRORS = {TimeoutError: httpcore.ReadTimeout, OSError: httpcore.ReadError}
_WRITE_ERRORS = {TimeoutError: httpcore.WriteTimeout, OSError: httpcore.WriteError}
_CONNECT_ERRORS = {TimeoutError: httpcore.ConnectTimeout, OSError: httpcore.ConnectError}
_TLS_ERRORS = {TimeoutError: httpcore.ConnectTimeout, ssl.SSLError: httpcore.ConnectError,
               OSError: httpcore.ConnectError}
#: Bytes a write may leave in the transport's buffer before it waits for the socket to drain.
WRITE_HIGH_WATER = 256 * 1024


def _mapped(exc: BaseException, table: dict) -> BaseException | None:
    for kind, to in table.items():
        if isinstance(exc, kind):
            return to(exc)
    return None


class AsyncioStream(httpcore.AsyncNetworkStream):
    __slots__ = ("_reader", "_writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            if timeout is None:
                return await self._reader.read(max_bytes)
            async with asyncio.timeout(timeout):
                return await self._reader.read(max_bytes)
        except (TimeoutError, OSError) as exc:
            raise _mapped(exc, _READ_ERRORS) from exc

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        writer = self._writer
        try:
            if writer.is_closing():
                raise ConnectionResetError("the connection is closed")
            writer.write(buffer)
            if writer.transport.get_write_buffer_size() <= WRITE_HIGH_WATER:
                return
            if timeout is None:
                await writer.drain()
            else:
                async with asyncio.timeout(timeout):
                    await writer.drain()
        except (TimeoutError, OSError) as exc:
            raise _mapped(exc, _WRITE_ERRORS) from exc

    async def aclose(self) -> None:
        self._writer.close()  # the transport closes in the background; nothing to wait for

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                await self._writer.start_tls(ssl_context, server_hostname=server_hostname)
        except (TimeoutError, ssl.SSLError, OSError) as exc:
            await self.aclose()
            raise _mapped(exc, _TLS_ERRORS) from exc
        return self  # the writer (and its reader) now speak TLS

    def get_extra_info(self, info: str) -> typing.Any:
        if info == "is_readable":
            # Idle connection check: the loop has already read whatever the server sent; an EOF
            # or an error (or stray bytes) there means the connection cannot carry a request.
            reader = self._reader
            return reader.at_eof() or reader.exception() is not None or bool(reader._buffer)  # noqa: SLF001
        if info == "ssl_object":
            return self._writer.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._writer.get_extra_info("sockname")
        if info == "server_addr":
            return self._writer.get_extra_info("peername")
        if info == "socket":
            return self._writer.get_extra_info("socket")
        return None


def _apply(writer: asyncio.StreamWriter, socket_options) -> None:
    sock = writer.get_extra_info("socket")
    for option in socket_options or ():
        sock.setsockopt(*option)


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None, socket_options=None) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host, port, local_addr=(local_address, 0) if local_address else None)
        except (TimeoutError, OSError) as exc:
            raise _mapped(exc, _CONNECT_ERRORS) from exc
        _apply(writer, socket_options)  # asyncio sets TCP_NODELAY on TCP sockets itself
        return AsyncioStream(reader, writer)

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options=None) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_unix_connection(path)
        except (TimeoutError, OSError) as exc:
            raise _mapped(exc, _CONNECT_ERRORS) from exc
        _apply(writer, socket_options)
        return AsyncioStream(reader, writer)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


BACKEND = AsyncioBackend()


def use_asyncio(transport: httpx.AsyncBaseTransport) -> httpx.AsyncBaseTransport:
    """Make an ``httpx.AsyncHTTPTransport``'s direct connections use ``AsyncioBackend`` (a proxy's
    transport, or any other kind, is left as it is); returns it."""
    pool = getattr(transport, "_pool", None)
    if isinstance(transport, httpx.AsyncHTTPTransport) and type(pool) is httpcore.AsyncConnectionPool:
        # The pool hands its backend to every connection it opens (httpcore 1.x; checked by
        # tests/unit/test_http_plumbing.py).
        pool._network_backend = BACKEND  # noqa: SLF001
    return transport


def transport(**kwargs) -> httpx.AsyncHTTPTransport:
    """``httpx.AsyncHTTPTransport(**kwargs)`` on ``AsyncioBackend``."""
    return use_asyncio(httpx.AsyncHTTPTransport(**kwargs))


__all__ = ["AsyncioBackend", "AsyncioStream", "transport", "use_asyncio"]
