"""The one error hierarchy: retryable versus fatal.

Stages, clients and servers raise these (or let ``classify`` sort foreign exceptions);
gRPC status codes and HTTP responses are mapped from them in one place each.
"""
from __future__ import annotations

import asyncio
import email.utils
import time


class VigilError(Exception):
    """Base class. ``code`` is a short stable identifier, safe for logs and headers (no PHI)."""

    code = "error"
    retryable = False

    def __init__(self, message: str = "", *, code: str | None = None):
        super().__init__(message)
        if code:
            self.code = code


class RetryableError(VigilError):
    """Worth trying again: timeouts, 5xx, 429, a peer that is briefly down."""

    code = "retryable"
    retryable = True

    def __init__(self, message: str = "", *, code: str | None = None, retry_after: float | None = None):
        super().__init__(message, code=code)
        self.retry_after = retry_after


class FatalError(VigilError):
    """Trying again cannot help: bad input, 4xx, a broken contract."""

    code = "fatal"


class ValidationError(FatalError):
    code = "validation"


class NotFoundError(FatalError):
    code = "not_found"


class ConflictError(FatalError):
    code = "conflict"


class PermissionDeniedError(FatalError):
    code = "permission_denied"


class UnauthenticatedError(FatalError):
    code = "unauthenticated"


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After is either delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def from_http_status(status: int, message: str = "", retry_after: str | None = None) -> VigilError:
    if status == 429 or status >= 500:
        return RetryableError(message or f"HTTP {status}", code=f"http_{status}",
                              retry_after=parse_retry_after(retry_after))
    if status == 401:
        return UnauthenticatedError(message or "HTTP 401", code="http_401")
    if status == 403:
        return PermissionDeniedError(message or "HTTP 403", code="http_403")
    if status == 404:
        return NotFoundError(message or "HTTP 404", code="http_404")
    if status in (409, 412):
        return ConflictError(message or f"HTTP {status}", code=f"http_{status}")
    return FatalError(message or f"HTTP {status}", code=f"http_{status}")


#: PostgreSQL SQLSTATE classes and codes that describe the server's state, not the request:
#: connection exceptions (08), insufficient resources such as too many connections (53),
#: operator intervention / shutdown (57P01-57P03), serialization failure and deadlock (40001, 40P01).
RETRYABLE_SQLSTATE_CLASSES = ("08", "53")
RETRYABLE_SQLSTATES = ("57P01", "57P02", "57P03", "40001", "40P01")


def _classify_postgres(exc: BaseException) -> VigilError | None:
    sqlstate = getattr(exc, "sqlstate", None)
    if not isinstance(sqlstate, str) or type(exc).__module__.split(".")[0] != "asyncpg":
        return None
    if sqlstate[:2] in RETRYABLE_SQLSTATE_CLASSES or sqlstate in RETRYABLE_SQLSTATES:
        return RetryableError(type(exc).__name__, code=f"pg_{sqlstate}")
    return FatalError(type(exc).__name__, code=f"pg_{sqlstate}")


def classify(exc: BaseException) -> VigilError:
    """Map any exception to our hierarchy; unknown exceptions are fatal (a bug will not fix itself)."""
    if isinstance(exc, VigilError):
        return exc
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return RetryableError("timed out", code="timeout")
    if isinstance(exc, PermissionError):  # an OSError, but a refusal (e.g. a topic outside the tenant), not a fault
        return PermissionDeniedError(str(exc), code="permission_denied")
    if isinstance(exc, (ConnectionError, OSError)):
        return RetryableError(type(exc).__name__, code="connection")
    try:
        import httpx

        if isinstance(exc, httpx.HTTPStatusError):
            return from_http_status(exc.response.status_code, retry_after=exc.response.headers.get("retry-after"))
        if isinstance(exc, (httpx.TimeoutException, httpx.TransportError)):
            return RetryableError(type(exc).__name__, code="http_transport")
    except ImportError:  # pragma: no cover - httpx is a dependency
        pass
    retryable_db = _classify_postgres(exc)
    if retryable_db is not None:
        return retryable_db
    try:
        from aiokafka.errors import KafkaError

        if isinstance(exc, KafkaError):
            return RetryableError(type(exc).__name__, code="kafka") if getattr(exc, "retriable", False) \
                else FatalError(type(exc).__name__, code="kafka")
    except ImportError:  # pragma: no cover
        pass
    return FatalError(type(exc).__name__, code="unexpected")
