"""An httpx transport that sends requests with aiohttp: ``AiohttpTransport``.

Every outbound client keeps httpx's API (``services.core.httpclient.async_client``): requests,
responses, redirects, auth, content decoding, proxies from the environment and test transports are
httpx's. Only the wire is aiohttp's, whose HTTP/1.1 connection pool and C parser cost about a
third of httpcore's CPU per request (``bench/writeback``: three EHR calls per note).

What the transport keeps equal to httpx's own:

- errors: aiohttp's are raised as the httpx exceptions callers classify (``ConnectError``,
  ``ConnectTimeout``, ``ReadTimeout``, ``PoolTimeout``, ``RemoteProtocolError``, ``ReadError``);
- timeouts: the request's ``timeout`` extension (connect, read, pool) on every request;
- TLS: the client's verifying context; ``verify=False`` turns verification off;
- pool limits: ``httpx.Limits`` (``max_connections``, ``keepalive_expiry``);
- bodies are streamed both ways (a Bulk Data file is never held whole), and aiohttp neither
  decompresses (httpx does), follows redirects (httpx does), nor adds headers of its own.

Keep-alive: an idle pooled connection is dropped after ``KEEPALIVE_S`` at most (below the 5 s of
common servers, uvicorn's and Apache's defaults), so a request is not sent on a connection the
server is closing. Reads that still meet one are sent again by ``FhirClient``.
"""
from __future__ import annotations

import asyncio
import ssl
from typing import TYPE_CHECKING, AsyncIterator

import httpx

if TYPE_CHECKING:
    import aiohttp

#: Longest a pooled connection may sit idle before it is closed by us (seconds).
KEEPALIVE_S = 2.5
#: Headers aiohttp would otherwise add on its own: httpx has already set what the request carries.
_NOT_AUTOMATIC = frozenset({"Accept", "Accept-Encoding", "User-Agent", "Content-Type"})
_CHUNK = 64 * 1024


def _aiohttp():
    """aiohttp, imported on a client's first request: importing it costs ~0.15 s of CPU (its
    connector builds TLS contexts), which a process that never sends a request (most CLI
    commands) does not pay."""
    import aiohttp

    return aiohttp


def _error(exc: BaseException, request: httpx.Request) -> httpx.TransportError:
    """aiohttp's exception -> the httpx one a caller of httpx expects (the message is the class
    name only: an aiohttp message can carry the URL, and a URL can carry a patient id)."""
    name, aiohttp = type(exc).__name__, _aiohttp()
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(name, request=request)
    if isinstance(exc, aiohttp.SocketTimeoutError):
        return httpx.ReadTimeout(name, request=request)
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return httpx.PoolTimeout(name, request=request)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError(name, request=request)
    if isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError,
                        aiohttp.ClientResponseError)):
        return httpx.RemoteProtocolError(name, request=request)
    if isinstance(exc, aiohttp.InvalidURL):
        return httpx.UnsupportedProtocol(name, request=request)
    return httpx.ReadError(name, request=request)


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, response: "aiohttp.ClientResponse", request: httpx.Request):
        self._response, self._request = response, request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_chunked(_CHUNK):
                yield chunk
        except (_aiohttp().ClientError, asyncio.TimeoutError) as exc:
            raise _error(exc, self._request) from None

    async def aclose(self) -> None:
        self._response.release()


async def _body(request: httpx.Request) -> AsyncIterator[bytes]:
    async for chunk in request.stream:  # type: ignore[union-attr]
        yield chunk


class AiohttpTransport(httpx.AsyncBaseTransport):
    def __init__(self, *, verify: ssl.SSLContext | bool = True, limits: httpx.Limits | None = None):
        limits = limits or httpx.Limits()
        self._ssl: ssl.SSLContext | bool = verify if isinstance(verify, ssl.SSLContext) else bool(verify)
        self._max_connections = limits.max_connections or 0  # 0: aiohttp's "no limit"
        expiry = limits.keepalive_expiry
        self._keepalive = KEEPALIVE_S if expiry is None else min(expiry, KEEPALIVE_S)
        self._session: "aiohttp.ClientSession | None" = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timeouts: dict[tuple, "aiohttp.ClientTimeout"] = {}

    def _open(self) -> "aiohttp.ClientSession":
        aiohttp, loop = _aiohttp(), asyncio.get_running_loop()
        if self._session is None or self._loop is not loop or self._session.closed:
            # A session belongs to the event loop it was made in (a client reused under another
            # loop, as ``asyncio.run`` twice does, gets a new one; the old one's loop is gone).
            connector = aiohttp.TCPConnector(limit=self._max_connections, limit_per_host=0,
                                             keepalive_timeout=self._keepalive, ssl=self._ssl,
                                             force_close=self._keepalive <= 0)
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                                  skip_auto_headers=_NOT_AUTOMATIC, cookie_jar=aiohttp.DummyCookieJar(),
                                                  timeout=aiohttp.ClientTimeout(total=None))
            self._loop = loop
        return self._session

    @staticmethod
    def _url(url: httpx.URL):
        """httpx's URL, already percent-encoded, as aiohttp's (not re-quoted)."""
        from yarl import URL

        return URL(str(url), encoded=True)

    def _timeout(self, request: httpx.Request) -> "aiohttp.ClientTimeout":
        t = request.extensions.get("timeout") or {}
        key = (t.get("connect"), t.get("read"), t.get("pool"))
        timeout = self._timeouts.get(key)
        if timeout is None:
            connect, read, pool = key
            # aiohttp's ``connect`` is the wait for a pooled connection plus the connect itself.
            total_connect = None if connect is None and pool is None else (connect or 0) + (pool or 0)
            timeout = self._timeouts[key] = _aiohttp().ClientTimeout(total=None, connect=total_connect,
                                                                   sock_connect=connect, sock_read=read)
        return timeout

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._open()
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
        try:
            data = request.content or None
        except httpx.RequestNotRead:  # a streaming body: sent as it is produced, chunked by aiohttp
            data = _body(request)
            headers = [(k, v) for k, v in headers if k.lower() != "transfer-encoding"]
        try:
            response = await session.request(request.method, self._url(request.url), data=data,
                                             headers=headers, allow_redirects=False,
                                             timeout=self._timeout(request))
        except (_aiohttp().ClientError, asyncio.TimeoutError) as exc:
            raise _error(exc, request) from None
        return httpx.Response(response.status, headers=list(response.raw_headers),
                              stream=_ResponseStream(response, request),
                              extensions={"http_version": b"HTTP/1.1",
                                          "reason_phrase": (response.reason or "").encode("latin-1", "replace")})

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()


__all__ = ["AiohttpTransport", "KEEPALIVE_S"]
