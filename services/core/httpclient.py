"""One way to make an outbound HTTP client: ``async_client(**httpx_kwargs)``.

The client is httpx's; its requests go over aiohttp (``services.core.httptransport``), unless the
caller brings a transport of its own (a test's recording or lossy one).

httpx builds a new TLS context for every client it creates (loading the CA bundle costs tens of
milliseconds of CPU each time). The process keeps one verifying context, created on first use,
and every client shares it; certificate verification stays on. A caller that passes its own
``verify`` (a context of its own, a CA file) keeps it.
"""
from __future__ import annotations

import ssl
import threading

import httpx

from services.core.httptransport import AiohttpTransport

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
    verify = kwargs.setdefault("verify", tls_context())
    if kwargs.get("transport") is None:
        if isinstance(verify, str):  # a CA file
            verify = ssl.create_default_context(cafile=verify)
        kwargs["transport"] = AiohttpTransport(verify=verify, limits=kwargs.pop("limits", None))
    return httpx.AsyncClient(**kwargs)


__all__ = ["async_client", "tls_context"]
