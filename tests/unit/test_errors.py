"""The one place that sorts exceptions into retryable and fatal."""
import asyncio

import asyncpg
import httpx

from services.core.errors import FatalError, RetryableError, classify, from_http_status, parse_retry_after


def test_postgres_server_state_is_retryable_request_errors_are_fatal():
    for exc in (asyncpg.TooManyConnectionsError("too many"), asyncpg.CannotConnectNowError("starting"),
                asyncpg.SerializationError("conflict"), asyncpg.DeadlockDetectedError("deadlock"),
                asyncpg.AdminShutdownError("shutdown")):
        err = classify(exc)
        assert isinstance(err, RetryableError) and err.code == f"pg_{exc.sqlstate}", exc
    for exc in (asyncpg.UniqueViolationError("dup"), asyncpg.UndefinedColumnError("col"),
                asyncpg.CheckViolationError("check")):
        err = classify(exc)
        assert isinstance(err, FatalError) and not err.retryable and err.code == f"pg_{exc.sqlstate}", exc


def test_http_and_transport_errors():
    assert classify(asyncio.TimeoutError()).retryable
    assert classify(ConnectionRefusedError()).retryable
    response = httpx.Response(429, headers={"retry-after": "7"}, request=httpx.Request("GET", "http://x"))
    err = classify(httpx.HTTPStatusError("x", request=response.request, response=response))
    assert err.retryable and err.retry_after == 7.0
    assert not from_http_status(404).retryable and from_http_status(503).retryable
    assert parse_retry_after("garbage") is None
    assert classify(ValueError("bug")).code == "unexpected" and not classify(ValueError()).retryable
