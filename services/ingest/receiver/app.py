"""The notification endpoints (one explicit route table): ``POST /notify/<tenant>`` for Backport IG
notification Bundles, ``POST /notify/<tenant>/r4/<Type>`` for classic R4 criteria notifications
(the resource, or an empty body; services.ingest.receiver.r4), and ``PUT
/notify/<tenant>/r4/<Type>/<Type>/<id>``, the form HAPI FHIR and Smile CDR use for a payload.

200 only after every event of the notification was published and acknowledged by the
broker (or was a duplicate). 400/401/404/413/415 with an OperationOutcome for requests
that are not valid notifications for this tenant (nothing published); 503 with
Retry-After when the EHR, the broker or the database is briefly unavailable (the EHR
retries); 422 when the EHR refuses a read the notification points at. An unexpected
failure is a 500 OperationOutcome with ``Connection: close`` (the server ends that
connection, and says so).
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from services.core import httperrors
from services.core.logging import get_logger
from services.core.routes import Route
from services.core.secrets import SecretSettings
from services.core.tenancy import Registry, TenantError, check_tenant_id
from services.ingest.liveness import Liveness
from services.ingest.receiver import auth, openapi, r4
from services.ingest.receiver.handler import NotificationHandler
from services.ingest.receiver.notification import BadNotification, parse_notification
from services.ingest.receiver.outcome import accepted, outcome

log = get_logger("ingest.receiver")
MAX_BODY_BYTES = 5 * 1024 * 1024  # a full-resource bundle of a long note fits many times over
RETRY_AFTER_S = "5"
CONTENT_TYPES = ("application/fhir+json", "application/json", "application/json+fhir")


@dataclass
class ReceiverContext:
    registry: Registry
    secrets: SecretSettings
    handler: NotificationHandler
    r4: r4.R4Notifications | None = None  # made from ``handler`` when not given
    #: The parts that make progress (services.ingest.liveness); None: nothing to check (tests).
    liveness: Liveness | None = None


async def _body(request: Request) -> bytes | None:
    """The body, or None when it is (or says it is) larger than MAX_BODY_BYTES."""
    length = request.headers.get("content-length")
    if length is not None and not (length.isascii() and length.isdigit() and len(length) <= 18
                                   and int(length) <= MAX_BODY_BYTES):
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


#: HTTP status -> OperationOutcome issue code.
ISSUE_CODES = {400: "invalid", 401: "login", 403: "forbidden", 404: "not-found", 409: "conflict", 422: "processing",
               503: "transient"}


def _failure(tenant: str, exc: Exception) -> JSONResponse:
    """A notification that failed while being handled: 503 (the EHR retries), 422 or 500."""
    answer = httperrors.failure(exc)
    log.warning("notify.failed", tenant=tenant, error_code=answer.error.code, retryable=answer.error.retryable)
    return _render_failure(None, answer)


def _render_failure(_request, answer: httperrors.Failure) -> JSONResponse:
    """The failure as an OperationOutcome; its status is ``services.core.httperrors``' except where
    the EHR refused a read the notification needs: that is neither the caller's fault nor ours (422)."""
    err = answer.error
    if answer.unexpected:  # a defect: the server closes the connection after it, say so
        return outcome(500, "exception", f"internal error ({answer.exception_class})", headers={"Connection": "close"})
    if err.retryable:
        return outcome(503, "transient", f"temporarily unavailable ({err.code}); retry",
                       headers={"Retry-After": RETRY_AFTER_S})
    if err.code.startswith("http_"):
        return outcome(422, "processing", f"the EHR refused a read this notification needs ({err.code})")
    if answer.status >= 500:
        return outcome(answer.status, "exception", f"internal error ({err.code})")
    return outcome(answer.status, ISSUE_CODES.get(answer.status, "processing"), str(err) or err.code)


def create_app(ctx: ReceiverContext) -> FastAPI:
    app = FastAPI(title="Vigil ingest: FHIR notification receiver", docs_url=None, redoc_url=None, openapi_url=None)

    async def notify(tenant: str, request: Request) -> JSONResponse:
        try:
            tenant_cfg = ctx.registry.get(check_tenant_id(tenant))
        except TenantError:
            return outcome(404, "not-found", "unknown tenant")
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media not in CONTENT_TYPES:
            return outcome(415, "not-supported", "Content-Type must be application/fhir+json")
        body = await _body(request)
        if body is None:
            return outcome(413, "too-costly", f"body larger than {MAX_BODY_BYTES} bytes")
        try:
            auth.check(ctx.secrets, tenant_cfg, request.headers, body)
        except auth.AuthError as exc:
            log.info("notify.unauthenticated", tenant=tenant_cfg.id)
            return outcome(401, "login", str(exc), headers={"WWW-Authenticate": "Bearer"})
        except auth.AuthConfigError as exc:  # the registry entry is wrong: refuse, say which setting
            log.error("notify.auth_misconfigured", tenant=tenant_cfg.id)
            return outcome(503, "transient", str(exc), headers={"Retry-After": RETRY_AFTER_S})
        try:
            note = parse_notification(json.loads(body))
        except (ValueError, RecursionError) as exc:
            path = exc.path if isinstance(exc, BadNotification) else "body"
            reason = str(exc) if isinstance(exc, BadNotification) else "not valid JSON"
            log.info("notify.bad_request", tenant=tenant_cfg.id, path=path[:80])
            return outcome(400, "invalid", reason)
        try:
            result = await ctx.handler.handle(tenant_cfg.id, note)
        except Exception as exc:
            return _failure(tenant_cfg.id, exc)
        return accepted(result.as_dict())

    r4_notifications = ctx.r4 or r4.R4Notifications(ctx.handler)

    async def notify_r4(tenant: str, resource_type: str, request: Request) -> JSONResponse:
        """The R4 channel type's POST: the resource, or an empty body."""
        return await _r4(tenant, resource_type, request, None)

    async def notify_r4_put(tenant: str, resource_type: str, path_type: str, rid: str,
                            request: Request) -> JSONResponse:
        """HAPI FHIR / Smile CDR deliver a payload as PUT ``[endpoint]/[Type]/[id]``."""
        if path_type != resource_type:
            return outcome(404, "not-found", "the path's resource type differs from the endpoint's")
        return await _r4(tenant, resource_type, request, rid)

    async def _r4(tenant: str, resource_type: str, request: Request, rid: str | None) -> JSONResponse:
        try:
            tenant_cfg = ctx.registry.get(check_tenant_id(tenant))
        except TenantError:
            return outcome(404, "not-found", "unknown tenant")
        if resource_type not in r4.TYPES:
            return outcome(404, "not-found", f"R4 notifications are received for {', '.join(r4.TYPES)} only")
        body = await _body(request)
        if body is None:
            return outcome(413, "too-costly", f"body larger than {MAX_BODY_BYTES} bytes")
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if body.strip() and media not in CONTENT_TYPES:
            return outcome(415, "not-supported", "Content-Type must be application/fhir+json")
        try:
            auth.check(ctx.secrets, tenant_cfg, request.headers, body)
        except auth.AuthError as exc:
            log.info("notify.unauthenticated", tenant=tenant_cfg.id)
            return outcome(401, "login", str(exc), headers={"WWW-Authenticate": "Bearer"})
        profile = tenant_cfg.integration
        if not profile.has_trigger(r4.TRIGGER):
            return outcome(403, "forbidden", "this tenant's integration profile has no r4-criteria trigger")
        try:
            resource = r4.parse_resource(body, resource_type)
            if rid is not None and (resource is None or resource["id"] != rid):
                raise BadNotification("a PUT must carry the resource whose id is in the URL", "id")
        except BadNotification as exc:
            log.info("notify.bad_request", tenant=tenant_cfg.id, path=exc.path[:80])
            return outcome(400, "invalid", str(exc))
        try:
            result = await r4_notifications.receive(tenant_cfg.id, resource_type, resource, profile)
        except Exception as exc:
            return _failure(tenant_cfg.id, exc)
        return accepted(result.as_dict())

    async def healthz(_request: Request) -> JSONResponse:
        problems = ctx.liveness.problems() if ctx.liveness is not None else {}
        if problems:
            return JSONResponse({"status": "unhealthy", "problems": problems}, status_code=503)
        parts = ctx.liveness.parts if ctx.liveness is not None else []
        return JSONResponse({"status": "ok", "parts": parts})

    async def openapi_document(_request: Request) -> JSONResponse:
        return JSONResponse(openapi.document(ROUTES))

    #: The route table.
    ROUTES = [
        Route("/notify/{tenant}", ("POST",), notify),
        Route("/notify/{tenant}/r4/{resource_type}", ("POST",), notify_r4),
        Route("/notify/{tenant}/r4/{resource_type}/{path_type}/{rid}", ("PUT",), notify_r4_put),
        Route("/healthz", ("GET",), healthz),
        Route("/openapi.json", ("GET",), openapi_document),
    ]
    for path, methods, endpoint in ROUTES:
        app.add_api_route(path, endpoint, methods=list(methods))
    httperrors.install(app, _render_failure, log_event="notify.crashed")
    return app
