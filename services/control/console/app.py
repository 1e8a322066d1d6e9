"""The console's routes (one table, ``ROUTES``) and server.

Every page calls the control gRPC service with the signed-in operator's own token, so the
tenant checks and the audit trail are the service's: an operator of tenant A opening
``/t/B/dlq`` gets the service's PERMISSION_DENIED (audited there) as a 403 page.
Replays run as a background task of the console reading the service's progress stream; the
progress page polls ``/t/<tenant>/replays/<job>.json`` (and refreshes itself without JS).
"""
from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from google.protobuf.json_format import MessageToDict

from services.control.client import ControlClient
from services.control.console import session as sess
from services.core import httperrors
from services.core.errors import VigilError
from services.core.grpc.settings import GrpcSettings
from services.core.httpserver import RunningHttp, start_http
from services.core.logging import get_logger
from services.core.routes import Route
from services.core.secrets import SecretSettings
from services.core.tokens import ADMIN_ROLE, verify
from vigil.v1 import control_pb2 as pb

log = get_logger("vigil.control.console")
TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
TEMPLATES.env.filters["when"] = lambda ms: datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime(
    "%Y-%m-%d %H:%M:%S UTC") if ms else "-"
FILTER_FIELDS = ("stage", "error_class", "fingerprint", "event_type", "patient_key", "status")
PAGE_SIZE = 50
#: Finished replay jobs kept for their progress page.
MAX_JOBS_KEPT = 200


@dataclass(frozen=True)
class ConsoleSettings:
    control_target: str
    session_key: bytes = field(repr=False)
    secure_cookie: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, control_target: str | None = None,
                 secrets: SecretSettings | None = None) -> "ConsoleSettings":
        source = os.environ if env is None else env
        secrets = secrets or SecretSettings.from_env(source)
        return cls(control_target or source.get("VIGIL_GRPC_CONTROL_ADDR") or "127.0.0.1:50063",
                   secrets.derive("vigil/control-console/session"),
                   (source.get("VIGIL_ENV") or "dev") == "prod")


def create_app(settings: ConsoleSettings, grpc_settings: GrpcSettings) -> FastAPI:
    app = FastAPI(title="Vigil control console", docs_url=None, redoc_url=None, openapi_url=None)
    jobs: dict[str, dict] = {}

    def current(request: Request) -> sess.Session | None:
        return sess.decode(settings.session_key, request.cookies.get(sess.COOKIE))

    def client(s: sess.Session) -> ControlClient:
        return ControlClient(grpc_settings, s.token, target=settings.control_target)

    def page(request: Request, name: str, s: sess.Session | None, http_status: int = 200, **ctx) -> HTMLResponse:
        claims = None
        if s is not None:
            try:
                claims = verify(grpc_settings.tokens, s.token)
            except VigilError:
                claims = None
        return TEMPLATES.TemplateResponse(request, name, {"claims": claims, "csrf": s.csrf(settings.session_key)
                                                          if s else "", **ctx}, status_code=http_status)

    def error(request: Request, s, exc: VigilError) -> HTMLResponse:
        status = httperrors.failure(exc).status
        return page(request, "error.html", s, status, message=str(exc) or exc.code, status=status)

    def unexpected(request: Request, failure: httperrors.Failure) -> HTMLResponse:
        s = current(request)
        return page(request, "error.html", s, failure.status, message=failure.error.code, status=failure.status)

    async def login_form(request: Request):
        return page(request, "login.html", None)

    async def login(request: Request):
        form = await request.form()
        token = str(form.get("token") or "").strip()
        try:
            claims = verify(grpc_settings.tokens, token)
        except VigilError as exc:
            return page(request, "login.html", None, 401, message=f"sign-in refused: {exc}")
        if claims.role not in ("operator", ADMIN_ROLE):
            return page(request, "login.html", None, 403, message="this token's role cannot use the console")
        target = "/" if claims.role == ADMIN_ROLE else f"/t/{claims.tenant}/dlq"
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(sess.COOKIE, sess.encode(settings.session_key, sess.new_session(token)), httponly=True,
                            samesite="strict", secure=settings.secure_cookie,
                            max_age=max(60, claims.exp - int(time.time())))
        return response

    async def logout(request: Request):
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(sess.COOKIE)
        return response

    async def home(request: Request):
        s = current(request)
        if s is None:
            return RedirectResponse("/login", status_code=303)
        try:
            async with client(s) as cc:
                stats = await cc.call("Stats", pb.StatsRequest())
        except VigilError as exc:
            return error(request, s, exc)
        return page(request, "home.html", s, stats=stats.stages)

    async def dlq_list(request: Request, tenant: str):
        s = current(request)
        if s is None:
            return RedirectResponse("/login", status_code=303)
        q = request.query_params
        flt = pb.DeadLetterFilter(tenant=tenant, **{k: q.get(k, "") for k in FILTER_FIELDS})
        try:
            async with client(s) as cc:
                listing = await cc.call("ListDeadLetters", pb.ListDeadLettersRequest(
                    filter=flt, tenant=tenant, page_size=PAGE_SIZE, page_token=q.get("page", "")))
        except VigilError as exc:
            return error(request, s, exc)
        return page(request, "list.html", s, tenant=tenant, items=listing.items, total=listing.total,
                    next_page=listing.next_page_token, filters={k: q.get(k, "") for k in FILTER_FIELDS})

    async def dlq_detail(request: Request, tenant: str, dlq_id: str):
        s = current(request)
        if s is None:
            return RedirectResponse("/login", status_code=303)
        try:
            async with client(s) as cc:
                detail = await cc.call("GetDeadLetter", pb.GetDeadLetterRequest(
                    id=dlq_id, tenant=tenant, include_payload=request.query_params.get("payload") == "1"))
        except VigilError as exc:
            return error(request, s, exc)
        payload = detail.payload.decode("utf-8", "replace") if detail.payload_included else None
        try:
            history = json.loads(detail.attempt_history_json or "[]")
        except ValueError:
            history = []
        return page(request, "detail.html", s, tenant=tenant, d=detail, e=detail.entry, payload=payload,
                    history=history)

    async def replay(request: Request, tenant: str):
        s = current(request)
        if s is None:
            return RedirectResponse("/login", status_code=303)
        form = await request.form()
        if not s.check_csrf(settings.session_key, form.get("csrf")):
            return page(request, "error.html", s, 403, message="the form expired; reload the page", status=403)
        flt = pb.DeadLetterFilter(tenant=tenant, ids=form.getlist("id"),
                                  **{k: str(form.get(k) or "") for k in FILTER_FIELDS if k != "status"})
        request_msg = pb.ReplayRequest(filter=flt, tenant=tenant, dry_run=form.get("action") == "dry-run",
                                       force=form.get("force") == "on")
        cc = client(s)
        try:
            await cc.__aenter__()
            stream = cc.stream("Replay", request_msg)
            first = await stream.__anext__()
        except VigilError as exc:
            await cc.__aexit__(None, None, None)
            return error(request, s, exc)
        if first.dry_run:
            await cc.__aexit__(None, None, None)
            return page(request, "dry_run.html", s, tenant=tenant, p=first, filters={
                k: str(form.get(k) or "") for k in FILTER_FIELDS if k != "status"}, ids=form.getlist("id"))
        job = {"tenant": tenant, "owner": s.nonce, "progress": MessageToDict(first, preserving_proto_field_name=True),
               "error": None}
        jobs[first.job_id] = job

        async def follow() -> None:
            try:
                async for step in stream:
                    job["progress"] = MessageToDict(step, preserving_proto_field_name=True)
            except VigilError as exc:
                job["error"] = str(exc) or exc.code
            finally:
                await cc.__aexit__(None, None, None)
        job["task"] = asyncio.create_task(follow())
        while len(jobs) > MAX_JOBS_KEPT:
            jobs.pop(next(iter(jobs)))
        return RedirectResponse(f"/t/{tenant}/replays/{first.job_id}", status_code=303)

    def _job(request: Request, tenant: str, job_id: str):
        s = current(request)
        job = jobs.get(job_id)
        if s is None or job is None or job["tenant"] != tenant or job["owner"] != s.nonce:
            return s, None
        return s, job

    async def replay_page(request: Request, tenant: str, job_id: str):
        s, job = _job(request, tenant, job_id)
        if s is None:
            return RedirectResponse("/login", status_code=303)
        if job is None:
            return page(request, "error.html", s, 404, message="no such replay job in this session", status=404)
        return page(request, "replay.html", s, tenant=tenant, job_id=job_id, p=job["progress"], error=job["error"])

    async def replay_json(request: Request, tenant: str, job_id: str):
        s, job = _job(request, tenant, job_id)
        if job is None:
            return JSONResponse({"error": "not found"}, status_code=404)
        return JSONResponse({"progress": job["progress"], "error": job["error"]})

    async def healthz(request: Request):
        return Response("ok", media_type="text/plain")

    #: The console's only routing table.
    ROUTES = [
        Route("/login", ("GET",), login_form), Route("/login", ("POST",), login), Route("/logout", ("GET",), logout),
        Route("/", ("GET",), home), Route("/healthz", ("GET",), healthz), Route("/t/{tenant}/dlq", ("GET",), dlq_list),
        Route("/t/{tenant}/dlq/{dlq_id}", ("GET",), dlq_detail),
        Route("/t/{tenant}/replay", ("POST",), replay), Route("/t/{tenant}/replays/{job_id}", ("GET",), replay_page),
        Route("/t/{tenant}/replays/{job_id}.json", ("GET",), replay_json),
    ]
    for path, methods, handler in sorted(ROUTES, key=lambda r: r.path.endswith(".json"), reverse=True):
        app.add_api_route(path, handler, methods=list(methods),
                          response_class=HTMLResponse if "GET" in methods else None)
    httperrors.install(app, unexpected, log_event="console.request_failed")
    return app


async def serve_console(settings: ConsoleSettings, grpc_settings: GrpcSettings, host: str, port: int
                        ) -> RunningHttp:
    """Serve the console in this event loop (port 0 picks a free port); returns once it listens."""
    return await start_http(create_app(settings, grpc_settings), host, port)
