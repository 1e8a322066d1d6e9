"""The one mapping between ``services.core.errors`` and gRPC status codes, both directions.

Server side: ``abort`` ends a failed call with the status of its error (``status_of``) and the
error code (and ``retry-after``) in trailing metadata. Client side: ``error_from_rpc`` turns a
failed call back into the error hierarchy.
"""
from __future__ import annotations

from typing import Sequence

import grpc

from services.core import errors
from services.core.logging import get_logger

log = get_logger("vigil.grpc")

RETRY_AFTER_METADATA = "retry-after"
ERROR_CODE_METADATA = "vigil-error-code"

#: VigilError class -> status code; first match wins, so subclasses come before their bases.
ERROR_STATUS: Sequence[tuple[type[errors.VigilError], grpc.StatusCode]] = (
    (errors.UnauthenticatedError, grpc.StatusCode.UNAUTHENTICATED),
    (errors.PermissionDeniedError, grpc.StatusCode.PERMISSION_DENIED),
    (errors.NotFoundError, grpc.StatusCode.NOT_FOUND),
    (errors.ConflictError, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.ValidationError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.RetryableError, grpc.StatusCode.UNAVAILABLE),
    (errors.FatalError, grpc.StatusCode.INTERNAL),
)
#: Retryable errors with these codes get a more precise status than UNAVAILABLE.
RETRYABLE_CODE_STATUS = {"timeout": grpc.StatusCode.DEADLINE_EXCEEDED,
                         "http_429": grpc.StatusCode.RESOURCE_EXHAUSTED,
                         "budget_exhausted": grpc.StatusCode.RESOURCE_EXHAUSTED}
#: Reverse direction, for clients: status code -> error class.
STATUS_ERROR = {
    grpc.StatusCode.UNAUTHENTICATED: errors.UnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: errors.PermissionDeniedError,
    grpc.StatusCode.NOT_FOUND: errors.NotFoundError,
    grpc.StatusCode.FAILED_PRECONDITION: errors.ConflictError,
    grpc.StatusCode.INVALID_ARGUMENT: errors.ValidationError,
    grpc.StatusCode.UNAVAILABLE: errors.RetryableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: errors.RetryableError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: errors.RetryableError,
}


def status_of(exc: BaseException) -> grpc.StatusCode:
    err = errors.classify(exc)
    if isinstance(err, errors.RetryableError) and err.code in RETRYABLE_CODE_STATUS:
        return RETRYABLE_CODE_STATUS[err.code]
    for cls, status in ERROR_STATUS:
        if isinstance(err, cls):
            return status
    return grpc.StatusCode.INTERNAL


def error_from_rpc(exc: grpc.aio.AioRpcError) -> errors.VigilError:
    """A failed call as our error hierarchy (retry_after from trailing metadata)."""
    trailing = dict(exc.trailing_metadata() or ())
    code = trailing.get(ERROR_CODE_METADATA) or f"grpc_{exc.code().name.lower()}"
    cls = STATUS_ERROR.get(exc.code(), errors.FatalError)
    message = exc.details() or exc.code().name
    if issubclass(cls, errors.RetryableError):
        raw = trailing.get(RETRY_AFTER_METADATA)
        return cls(message, code=code, retry_after=float(raw) if raw else None)
    return cls(message, code=code)


async def abort(context: grpc.aio.ServicerContext, exc: BaseException, method: str) -> None:
    """End the call with ``exc``'s status; an unexpected exception is INTERNAL with no details."""
    err = errors.classify(exc)
    status = status_of(err)
    trailing = [(ERROR_CODE_METADATA, err.code)]
    if isinstance(err, errors.RetryableError) and err.retry_after is not None:
        trailing.append((RETRY_AFTER_METADATA, f"{err.retry_after:.3f}"))
    if status == grpc.StatusCode.INTERNAL and not isinstance(exc, errors.VigilError):
        log.error("grpc.unexpected_error", method=method, error_type=type(exc).__name__)
        message = "internal error"
    else:
        log.info("grpc.call_failed", method=method, status=status.name, error_code=err.code)
        message = str(err) or err.code
    context.set_trailing_metadata(tuple(trailing))
    await context.abort(status, message)
