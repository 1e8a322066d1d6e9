"""Wiring: the FastAPI application, its database pool, error mapping and routes."""
from __future__ import annotations

from contextlib import asynccontextmanager

import asyncpg
from fastapi import FastAPI
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request

from services.core import httperrors
from services.core.db import create_pool, ensure_schema
from services.core.logging import get_logger
from services.core.secrets import SecretSettings
from services.core.tenantdb import set_service_password
from services.ehr import families, routes, storage
from services.ehr.auth import TokenService
from services.ehr.bulk import jobs as export_jobs
from services.ehr.config import EhrSettings
from services.ehr.http import Services
from services.ehr.outcome import FhirError, error_response
from services.ehr.registry import Registry
from services.ehr.subscriptions import runtime as subscriptions

log = get_logger("ehr.app")
POOL_MAX = 20
#: The platform (admin) pool: schema steps, tenant creation/listing, the delivery lease.
PLATFORM_POOL_MAX = 2


async def open_services(settings: EhrSettings) -> Services:
    """The platform pool connects with the configured DSN (a superuser or BYPASSRLS role); the
    request pool connects as ``vigil_ehr``, subject to the tenant policies."""
    platform = await create_pool(settings.core, min_size=1, max_size=PLATFORM_POOL_MAX,
                                 init=storage.init_connection)
    try:
        await ensure_schema(platform, "ehr", storage.STEPS)
        await ensure_schema(platform, "ehr_export", export_jobs.STEPS)
        await ensure_schema(platform, "ehr_families", families.STEPS)
        await ensure_schema(platform, "ehr_notify", storage.NOTIFY_STEPS)
        async with platform.acquire() as conn:
            password = await set_service_password(conn, storage.EHR_ROLE, SecretSettings.from_env())
        pool = await create_pool(settings.core, min_size=2, max_size=POOL_MAX, init=storage.init_connection,
                                 reset=storage.keep_session, user=storage.EHR_ROLE, password=password)
    except BaseException:
        await platform.close()
        raise
    store = storage.Store(pool, platform)
    registry = Registry(store)
    return Services(settings, store, registry, TokenService(registry, settings.admin_secret))


def create_app(settings: EhrSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.ehr = await open_services(settings)
        worker = await subscriptions.start(app.state.ehr)
        log.info("ehr.started")
        try:
            yield
        finally:
            await subscriptions.stop(worker)
            await app.state.ehr.store.pool.close()
            await app.state.ehr.store.platform.close()

    app = FastAPI(title="Vigil EHR sandbox", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    for path, methods, handler in routes.ROUTES:
        app.add_route(path, handler, methods=methods)
    app.add_middleware(subscriptions.RequestRootMiddleware)

    @app.exception_handler(FhirError)
    async def fhir_error(request: Request, exc: FhirError):
        if exc.status >= 500:
            log.warning("ehr.request.failed", status=exc.status, code=exc.code, path_kind=request.scope.get("route") and
                        request.scope["route"].path)
        return error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        code = {404: "not-found", 405: "not-supported"}.get(exc.status_code, "processing")
        text = {404: "No such FHIR endpoint", 405: "This interaction is not supported on this URL"}.get(
            exc.status_code, "HTTP error")
        return error_response(FhirError(exc.status_code, text, code))

    httperrors.install(app, _failure_response, log_event="ehr.request.failed", statuses=FAILURE_STATUSES)
    return app


#: The sandbox's own rows of the status mapping (``services.core.httperrors``): a deadlock between
#: two writes is a conflict the client resolves by retrying; a value PostgreSQL refuses is invalid input.
FAILURE_STATUSES = ((asyncpg.DeadlockDetectedError, 409), (asyncpg.DataError, 400))
#: HTTP status -> (OperationOutcome issue code, diagnostics) of a failure no handler answered itself.
FAILURE_OUTCOMES = {400: ("invalid", "A value could not be processed: {cls}"),
                    401: ("login", "Authentication failed"), 403: ("forbidden", "Not allowed"),
                    404: ("not-found", "Not found"),
                    409: ("conflict", "The write conflicted with a concurrent write; retry it"),
                    503: ("transient", "Temporarily unavailable ({cls}); retry")}


def _failure_response(_request: Request, failure: httperrors.Failure):
    if failure.unexpected:
        # The server ends the connection after an unexpected error; Connection: close tells the
        # client so, and its next request opens a new connection instead of failing on a reset one.
        return error_response(FhirError(500, f"Internal error ({failure.exception_class})", "exception",
                                        headers={"Connection": "close"}))
    code, text = FAILURE_OUTCOMES.get(failure.status, ("exception", "Internal error ({cls})"))
    return error_response(FhirError(failure.status, text.format(cls=failure.exception_class), code))
