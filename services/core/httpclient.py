"""One way to make an outbound HTTP client: ``async_client(**httpx_kwargs)``.

The client is httpx's; its requests go over aiohttp (``services.core.httptransport``), unless the
caller brings a transport of its own (a test's recording or lossy one).

httpx builds a new TLS context for every client it creates (loading the CA bundle costs tens of
milliseconds of CPU each time). The process keeps one verifying context, created on first use,
and every client shares it; certificate verification stays on. A caller that passes its own
``verify`` (a context of its own, a CA file) keeps it.

The clients keep no cookies. Every outbound call is server to server (SMART backend services,
CDS and Subscription endpoints, the model endpoint) and authenticates with its own credential; a
cookie an endpoint sets is neither stored nor sent back, so no server can pin a session on us.
httpx would otherwise run every response through ``http.cookiejar``. Only a stand-in for a
person's browser (the demo's clinician signing in to the inbox) asks for ``keep_cookies=True``.
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


class NoCookies(httpx.Cookies):
    """A cookie jar that stays empty: ``Set-Cookie`` is ignored."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None

    def set(self, name: str, value: str, domain: str = "", path: str = "/") -> None:
        raise TypeError("outbound clients keep no cookies")


class AsyncClient(httpx.AsyncClient):
    """httpx's client with ``NoCookies``."""

    def __init__(self, **kwargs):
        if kwargs.get("cookies"):
            raise TypeError("outbound clients keep no cookies")
        super().__init__(**kwargs)
        self._cookies = NoCookies()

    @property
    def cookies(self) -> httpx.Cookies:
        return self._cookies

    @cookies.setter
    def cookies(self, cookies) -> None:
        raise TypeError("outbound clients keep no cookies")


def transport(*, verify: ssl.SSLContext | str | bool | None = None,
              limits: httpx.Limits | None = None) -> AiohttpTransport:
    """The transport an outbound client gets: aiohttp, the shared TLS context unless ``verify``
    says otherwise (a context, a CA file)."""
    if verify is None:
        verify = tls_context()
    elif isinstance(verify, str):  # a CA file
        verify = ssl.create_default_context(cafile=verify)
    return AiohttpTransport(verify=verify, limits=limits)


def async_client(*, keep_cookies: bool = False, **kwargs) -> httpx.AsyncClient:
    verify = kwargs.setdefault("verify", tls_context())
    if kwargs.get("transport") is None:
        kwargs["transport"] = transport(verify=verify, limits=kwargs.pop("limits", None))
    return httpx.AsyncClient(**kwargs) if keep_cookies else AsyncClient(**kwargs)


__all__ = ["async_client", "tls_context", "transport"]
