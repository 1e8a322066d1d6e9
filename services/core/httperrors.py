"""The one mapping from exceptions to HTTP responses, for the Starlette/FastAPI services.

    httperrors.install(app, render, log_event="cds.request_failed")   # render(request, failure) -> Response

Whatever a route lets escape is classified (``errors.classify``: timeouts, connection and
PostgreSQL errors become ``RetryableError`` ...) and given a status by ``ERROR_STATUS``, the HTTP
twin of ``services.core.grpc.status.ERROR_STATUS``. The service only renders the ``Failure``
in its own format (JSON error, FHIR OperationOutcome, an HTML page): the status is decided
here. A route that answers a failure itself (e.g. a notification the EHR must retry) calls
``failure(exc)`` for the same decision. Logs name the error code and class, never the message
(it may be built from a request).
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import asyncpg

from services.core import errors
from services.core.logging import get_logger

log = get_logger("vigil.http")

#: VigilError class -> HTTP status; first match wins, so subclasses come before their bases.
ERROR_STATUS: Sequence[tuple[type[errors.VigilError], int]] = (
    (errors.UnauthenticatedError, 401),
    (errors.PermissionDeniedError, 403),
    (errors.NotFoundError, 404),
    (errors.ConflictError, 409),
    (errors.ValidationError, 400),
    (errors.RetryableError, 503),
    (errors.FatalError, 500),
)
#: The exceptions ``install`` answers as handled errors (the rest reach the last-resort handler,
#: which answers too and lets the server log the traceback of what is then a bug).
CLASSIFIED = (errors.VigilError, OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


@dataclass(frozen=True)
class Failure:
    """What a failed request is answered with: ``status``, and the error to render."""

    status: int
    error: errors.VigilError
    #: Not one of ours and not a known transient fault: a bug. Render no details beyond the class.
    unexpected: bool
    exception_class: str

    @property
    def retry_after(self) -> float | None:
        return getattr(self.error, "retry_after", None)


def status_of(err: errors.VigilError, statuses: Sequence[tuple[type[BaseException], int]] = ()) -> int:
    for cls, status in (*statuses, *ERROR_STATUS):
        if isinstance(err, cls):
            return status
    return 500


def failure(exc: BaseException, statuses: Sequence[tuple[type[BaseException], int]] = ()) -> Failure:
    """The answer to ``exc``. ``statuses``: the service's own (class, status) rows, checked first
    (against the exception as raised, then as classified)."""
    err = errors.classify(exc)
    status = next((s for cls, s in statuses if isinstance(exc, cls)), None) or status_of(err, statuses)
    return Failure(status, err, not isinstance(exc, errors.VigilError) and err.code == "unexpected",
                   type(exc).__name__)


def install(app: Any, render: Callable[[Any, Failure], Any], *, log_event: str,
            statuses: Sequence[tuple[type[BaseException], int]] = ()) -> None:
    """Answer every exception a route of ``app`` raises with ``render(request, failure(exc))``."""

    async def handle(request, exc: Exception):
        answer = failure(exc, statuses)
        fields = {"status": answer.status, "error_code": answer.error.code, "error_class": answer.exception_class}
        if answer.unexpected:
            log.error(log_event, **fields)
        elif answer.status >= 500:
            log.warning(log_event, **fields)
        else:
            log.info(log_event, **fields)
        return render(request, answer)

    for cls in (*{cls for cls, _ in statuses}, *CLASSIFIED, Exception):
        app.add_exception_handler(cls, handle)
