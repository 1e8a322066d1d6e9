"""The inbox pages and their one route table.

- ``GET  /inbox/<tenant>/login?token=<link token>``: redeem a practitioner's sign-in link (signed,
  15 min, single use; ``session``) and start a session bound to that practitioner
- ``GET  /inbox/<tenant>``: the practitioner's open Tasks
- ``GET  /inbox/<tenant>/tasks/<id>``; ``POST .../accept``; ``POST .../override``
Without a session for this tenant every page is 401; a Task not in this tenant is 404; a Task
owned by another practitioner is 403 (to see it or act on it, that practitioner signs in).
"""
from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from services.core.routes import Route
from services.core.logging import get_logger
from services.core.tenancy import TENANT_ID
from services.ehr import values
from services.ehr.http import services
from services.ehr.inbox import actions, session as sessions, views
from services.ehr.outcome import FhirError
from services.ehr.validation import ID_RE

log = get_logger("ehr.inbox")
_env = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                   autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)
MAX_FORM_BYTES = 16 * 1024
_HEADERS = {"Cache-Control": "no-store", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"}


def _render(name: str, status: int = 200, **data) -> HTMLResponse:
    return HTMLResponse(_env.get_template(name).render(**data), status_code=status, headers=_HEADERS)


def _message(tenant: str, status: int, heading: str, message: str) -> HTMLResponse:
    return _render("message.html", status, tenant=tenant, heading=heading, message=message)


class _Stop(Exception):
    def __init__(self, response: Response):
        self.response = response


async def _tenant(request: Request) -> str:
    tenant = request.path_params["tenant"]
    if not TENANT_ID.match(tenant) or await services(request).registry.tenant(tenant) is None:
        raise _Stop(_message("unknown", 404, "Not found", "There is no inbox here."))
    return tenant


async def _session(request: Request) -> tuple[str, sessions.Session]:
    tenant = await _tenant(request)
    found = sessions.decode(services(request).settings.admin_secret, tenant, request.cookies.get(sessions.COOKIE))
    if found is None:
        raise _Stop(_message(tenant, 401, "Sign in", "Open the inbox with your own sign-in link to sign in."))
    return tenant, found


def _owned(s: sessions.Session, task: dict) -> None:
    """Only the Task's owner sees it and acts on it here (403 for anyone else)."""
    if (task.get("owner") or {}).get("reference") != f"Practitioner/{s.practitioner}":
        raise _Stop(_message(s.tenant, 403, "Not yours", "This task belongs to another practitioner's inbox."))


async def _form(request: Request, s: sessions.Session) -> dict:
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and (len(declared) > 18 or int(declared) > MAX_FORM_BYTES):
        raise _Stop(_message(s.tenant, 413, "Too large", "The form is too large."))
    form = dict(await request.form())
    if not s.check_csrf(services(request).settings.admin_secret, form.get("csrf")):
        raise _Stop(_message(s.tenant, 403, "Refused", "The form expired; reload the page and try again."))
    return form


def _page(handler):
    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except _Stop as stop:
            return stop.response
    wrapped.__name__ = handler.__name__
    return wrapped


def _with_cookie(response: Response, request: Request, s: sessions.Session) -> Response:
    response.set_cookie(**sessions.cookie_args(s.tenant, sessions.encode(services(request).settings.admin_secret, s)))
    return response


@_page
async def login(request: Request) -> Response:
    tenant = await _tenant(request)
    svc = services(request)
    link = sessions.read_link(svc.settings.admin_secret, tenant, request.query_params.get("token", ""))
    if link is None:
        return _message(tenant, 401, "Sign in", "This sign-in link is not valid or has expired; ask for a new one.")
    async with svc.store.transaction(tenant) as tx:
        try:
            await tx.read("Practitioner", link.practitioner)
        except FhirError:
            return _message(tenant, 401, "Sign in", "This sign-in link names no practitioner of this EHR.")
    if not await svc.registry.use_jti(tenant, sessions.LINK_JTI_CLIENT, link.nonce, link.expires):
        log.info("inbox.link_reused", tenant=tenant)
        return _message(tenant, 401, "Sign in", "This sign-in link was already used; ask for a new one.")
    log.info("inbox.signed_in", tenant=tenant)
    return _with_cookie(RedirectResponse(f"/inbox/{tenant}", 303), request, sessions.new_session(link))


async def _practitioner_name(request: Request, tenant: str, pid: str) -> str:
    async with services(request).store.transaction(tenant) as tx:
        try:
            return views.person_name((await tx.read("Practitioner", pid)).content)
        except FhirError:
            return "(unknown practitioner)"


@_page
async def home(request: Request) -> Response:
    tenant, s = await _session(request)
    async with services(request).store.transaction(tenant) as tx:
        tasks = await views.open_tasks(tx, s.practitioner)
    return _render("list.html", tenant=tenant, tasks=tasks,
                   practitioner_name=await _practitioner_name(request, tenant, s.practitioner))


async def _task_page(request: Request, tenant: str, s: sessions.Session, task_id: str, status: int = 200,
                     **extra) -> Response:
    if not ID_RE.match(task_id):
        return _message(tenant, 404, "Not found", "There is no such task in this inbox.")
    async with services(request).store.transaction(tenant) as tx:
        try:
            view = await views.task_view(tx, task_id)
        except FhirError:
            return _message(tenant, 404, "Not found", "There is no such task in this inbox.")
    _owned(s, view.task)
    return _render("task.html", status, tenant=tenant, v=view, csrf=s.csrf(services(request).settings.admin_secret),
                   reasons=actions.OVERRIDE_REASONS,
                   practitioner_name=await _practitioner_name(request, tenant, s.practitioner), **extra)


@_page
async def task(request: Request) -> Response:
    tenant, s = await _session(request)
    done = {"accept": "You accepted this task.", "override": "You overrode this task."}.get(
        request.query_params.get("done", ""))
    return await _task_page(request, tenant, s, request.path_params["tid"], done=done)


async def _decide(request: Request, decision: str) -> Response:
    tenant, s = await _session(request)
    task_id = request.path_params["tid"]
    form = await _form(request, s)
    version = values.version(str(form.get("version", "")))
    if not ID_RE.match(task_id) or version is None:
        return _message(tenant, 400, "Refused", "The form is incomplete; reload the page.")
    svc = services(request)
    try:
        async with svc.store.transaction(tenant, drop_writes=(await svc.registry.tenant(tenant)).faults.drop_writes) as tx:
            _owned(s, (await tx.read("Task", task_id)).content)
            await actions.decide(tx, task_id, version, s.practitioner, decision, form.get("reason") or None,
                                 str(form.get("comment", "")))
    except FhirError as exc:
        if exc.status == 404 or exc.status == 410:
            return _message(tenant, 404, "Not found", "There is no such task in this inbox.")
        text = ("Someone changed this task meanwhile; review it again." if exc.status == 412 else exc.diagnostics)
        return await _task_page(request, tenant, s, task_id, 409 if exc.status == 412 else 400, error=text)
    log.info("inbox.decision", tenant=tenant, decision=decision)
    return RedirectResponse(f"/inbox/{tenant}/tasks/{task_id}?done={decision}", 303)


@_page
async def accept(request: Request) -> Response:
    return await _decide(request, "accept")


@_page
async def override(request: Request) -> Response:
    return await _decide(request, "override")


I = "/inbox/{tenant}"
ROUTES: list[Route] = [
    Route(f"{I}/login", ["GET"], login),
    Route(I, ["GET"], home),
    Route(f"{I}/tasks/{{tid}}", ["GET"], task),
    Route(f"{I}/tasks/{{tid}}/accept", ["POST"], accept),
    Route(f"{I}/tasks/{{tid}}/override", ["POST"], override),
]
