"""One way to make an outbound HTTP client: ``async_client(**httpx_kwargs)``.

httpx builds a new TLS context for every client it creates (loading the CA bundle costs tens of
milliseconds of CPU each time). The process keeps one verifying context, created on first use,
and every client shares it; certificate verification stays on. A caller that passes its own
``verify`` (a context of its own, a CA file) keeps it. Connections run on asyncio streams
(``services.core.httpnet``) unless the caller passes a transport of its own.
"""
from __future__ import annotations

import ssl
import threading

import httpx

from services.core import httpnet

_lock = threading.Lock()
_context: ssl.SSLContext | None = None


def tls_context() -> ssl.SSLContext:
    """The process's shared verifying TLS context (certifi's CA bundle, as httpx uses by default)."""
    global _context
    if _context is None:
        with _lock:
            if _context is None:
                _context = httpx.create_ssl_context()
    return _context


def async_client(**kwargs) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient``; unless the caller passes a transport of its own, its direct
    connections run on asyncio streams (``httpnet``: the same pool, limits, TLS context, proxies
    from the environment and errors, less CPU)."""
    kwargs.setdefault("verify", tls_context())
    client = httpx.AsyncClient(**kwargs)
    if kwargs.get("transport") is None:
        httpnet.use_asyncio(client._transport)  # noqa: SLF001  (the client's default transport)
    return client


__all__ = ["async_client", "tls_context"]
