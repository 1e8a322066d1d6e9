"""The FHIR REST handlers and the one table of routes (order matters: first match wins)."""
from __future__ import annotations

from datetime import datetime
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from services.core.routes import Route
from services.ehr import admin, auth, capability, families, interactions, openapi, scheduling, search, transactions
from services.ehr.config import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from services.ehr.http import FORM_TYPE, base_url, context, read_body, read_json, resource_response
from services.ehr.outcome import bad_request, fhir_response, not_found
from services.ehr.bulk import operations as bulk_ops
from services.ehr.inbox import pages as inbox_pages
from services.ehr.subscriptions import operations as subscription_ops
from services.ehr.validation import check_id, check_type, validate
from services.ehr.values import date_range, etag_version, version, whole_number


def _target(request: Request) -> tuple[str, str | None]:
    rtype = check_type(request.path_params["rtype"])
    rid = request.path_params.get("rid")
    return rtype, (check_id(rid) if rid is not None else None)


async def metadata(request: Request) -> Response:
    ctx = await context(request, auth=False)
    return fhir_response(capability.statement(ctx.base, ctx.tenant.family))


async def smart_configuration(request: Request) -> Response:
    ctx = await context(request, auth=False)
    return JSONResponse(capability.smart_configuration(ctx.base))


async def token(request: Request) -> Response:
    ctx = await context(request, auth=False)
    try:
        raw = await read_body(request, form=True)
        form = dict(parse_qsl(raw.decode("utf-8", errors="replace"), keep_blank_values=True))
        body = await ctx.services.tokens.issue(ctx.tenant.id, f"{ctx.base}/auth/token", form)
    except auth.OAuthError as exc:
        return JSONResponse(exc.body(), exc.status, headers={"Cache-Control": "no-store"})
    return JSONResponse(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


async def bundle(request: Request) -> Response:
    ctx = await context(request)
    body = await read_json(request)
    result = await transactions.process(ctx.store, ctx.tenant.id, body, ctx.principal, ctx.base,
                                        drop_writes=ctx.tenant.faults.drop_writes,
                                        with_resources=_prefers_representation(request), family=ctx.tenant.family)
    return fhir_response(result)


def _prefers_representation(request: Request) -> bool:
    return "return=representation" in request.headers.get("prefer", "").replace(" ", "")


async def read(request: Request) -> Response:
    ctx = await context(request)
    rtype, rid = _target(request)
    ctx.require(rtype, "r")
    async with ctx.store.transaction(ctx.tenant.id) as tx:
        stored = await tx.read(rtype, rid)
    if_none_match = request.headers.get("if-none-match")
    if if_none_match and etag_version(if_none_match, "If-None-Match") == stored.version:
        return Response(status_code=304, headers={"ETag": stored.etag})
    return resource_response(request, ctx, stored)


async def vread(request: Request) -> Response:
    ctx = await context(request)
    rtype, rid = _target(request)
    ctx.require(rtype, "r")
    vid = request.path_params["vid"]
    number = version(vid)
    if number is None:
        raise not_found(f"{rtype}/{rid} has no version '{vid[:20]}'")
    async with ctx.store.transaction(ctx.tenant.id) as tx:
        stored = await tx.vread(rtype, rid, number)
    return resource_response(request, ctx, stored)


async def create(request: Request) -> Response:
    ctx = await context(request)
    rtype, _ = _target(request)
    ctx.require(rtype, "c")
    resource = validate(await read_json(request), rtype)
    resource.pop("id", None)
    async with ctx.store.transaction(ctx.tenant.id, drop_writes=ctx.tenant.faults.drop_writes) as tx:
        # If-None-Exist, or (as some clients send it) the criteria as the POST's query string.
        criteria = request.headers.get("if-none-exist") or request.url.query or None
        status, stored = await interactions.create(tx, rtype, resource, criteria)
    return resource_response(request, ctx, stored, status, location=True)


async def update(request: Request) -> Response:
    ctx = await context(request)
    rtype, rid = _target(request)
    ctx.require(rtype, "u")
    if_match = etag_version(request.headers.get("if-match"))
    resource = validate(await read_json(request), rtype)
    if resource.get("id") != rid:
        raise bad_request(f"The resource id must be present and equal the URL id '{rid}'")
    async with ctx.store.transaction(ctx.tenant.id, drop_writes=ctx.tenant.faults.drop_writes) as tx:
        status, stored = await interactions.update(tx, rtype, rid, resource, if_match)
    return resource_response(request, ctx, stored, status, location=True)


async def conditional_update(request: Request) -> Response:
    ctx = await context(request)
    rtype, _ = _target(request)
    ctx.require(rtype, "u")
    if not request.url.query:
        raise bad_request("PUT on a type needs search criteria (conditional update) or an id in the URL")
    if_match = etag_version(request.headers.get("if-match"))
    resource = validate(await read_json(request), rtype)
    async with ctx.store.transaction(ctx.tenant.id, drop_writes=ctx.tenant.faults.drop_writes) as tx:
        status, stored = await interactions.conditional_update(tx, rtype, request.url.query, resource, if_match)
    return resource_response(request, ctx, stored, status, location=True)


async def delete(request: Request) -> Response:
    ctx = await context(request)
    rtype, rid = _target(request)
    ctx.require(rtype, "d")
    async with ctx.store.transaction(ctx.tenant.id, drop_writes=ctx.tenant.faults.drop_writes) as tx:
        stored = await tx.delete(rtype, rid)
        if stored is None and await tx.current(rtype, rid) is None:
            raise not_found(f"{rtype}/{rid} is not known")
    headers = {"ETag": stored.etag} if stored else {}
    return Response(status_code=204, headers=headers)


async def search_type(request: Request) -> Response:
    ctx = await context(request)
    rtype, _ = _target(request)
    ctx.require(rtype, "s")
    params = list(request.query_params.multi_items())
    if request.method == "POST":
        raw = await read_body(request, form=True)
        params += parse_qsl(raw.decode("utf-8", errors="replace"), keep_blank_values=True)
    families.check_search(ctx.tenant.family, rtype, params)
    q = search.parse(rtype, params)
    async with ctx.store.transaction(ctx.tenant.id) as tx:
        total, rows = await search.run(tx, q)
    return fhir_response(search.bundle(ctx.base, q, total, rows))


def _history_params(request: Request) -> tuple[datetime | None, int, int]:
    since, count, offset = None, DEFAULT_PAGE_SIZE, 0
    for name, value in request.query_params.multi_items():
        if name == "_since":
            _, since, _ = date_range(value)
        elif name == "_count":
            count = whole_number(name, value, 1, MAX_PAGE_SIZE, clamp=True)
        elif name == "_offset":
            offset = whole_number(name, value, 0, search.MAX_OFFSET, clamp=True)
        elif name not in ("_format", "_pretty"):
            raise bad_request(f"History does not support the parameter '{name[:40]}'", "not-supported")
    return since, count, offset


async def history(request: Request) -> Response:
    ctx = await context(request)
    rtype, rid = _target(request)
    ctx.require(rtype, "r" if rid else "s")
    if rid is None:  # a type's history is a search without criteria
        families.check_search(ctx.tenant.family, rtype, [])
    since, count, offset = _history_params(request)
    async with ctx.store.transaction(ctx.tenant.id) as tx:
        total, rows = await tx.history(rtype, rid, since, count, offset)
    path = f"{ctx.base}/{rtype}" + (f"/{rid}" if rid else "") + "/_history"
    links = [{"relation": "self", "url": f"{path}?_count={count}&_offset={offset}"}]
    if offset + count < total:
        links.append({"relation": "next", "url": f"{path}?_count={count}&_offset={offset + count}"})
    entries = []
    for r in rows:
        entry = {"fullUrl": f"{ctx.base}/{r.type}/{r.id}",
                 "request": {"method": r.method, "url": f"{r.type}/{r.id}" if r.method != "POST" else r.type},
                 "response": {"status": "204" if r.deleted else ("201" if r.version == 1 else "200"),
                              "etag": r.etag, "lastModified": r.content["meta"]["lastUpdated"]}}
        if not r.deleted:
            entry["resource"] = r.content
        entries.append(entry)
    return fhir_response({"resourceType": "Bundle", "type": "history", "total": total, "link": links,
                          "entry": entries})


async def openapi_document(request: Request) -> Response:
    return JSONResponse(openapi.document(ROUTES))


async def healthz(request: Request) -> Response:
    pool = request.app.state.ehr.store.pool
    await pool.fetchval("SELECT 1")
    return JSONResponse({"status": "ok", "fhir_base": base_url(request, "<tenant>")})


F = "/fhir/{tenant}"
#: Operations come before /{rtype}/{rid} so "$find" is not taken for an id.
ROUTES: list[Route] = [
    Route("/healthz", ["GET"], healthz),
    Route("/openapi.json", ["GET"], openapi_document),
    *admin.ROUTES,
    *inbox_pages.ROUTES,
    Route(f"{F}/metadata", ["GET"], metadata),
    Route(f"{F}/.well-known/smart-configuration", ["GET"], smart_configuration),
    Route(f"{F}/auth/token", ["POST"], token),
    Route(F, ["POST"], bundle),
    Route(F + "/", ["POST"], bundle),
    *subscription_ops.ROUTES,
    *bulk_ops.ROUTES,
    Route(f"{F}/Appointment/$find", ["GET", "POST"], scheduling.find),
    Route(f"{F}/Appointment/$book", ["POST"], scheduling.book),
    Route(f"{F}/{{rtype}}/_search", ["POST"], search_type),
    Route(f"{F}/{{rtype}}/_history", ["GET"], history),
    Route(f"{F}/{{rtype}}/{{rid}}/_history/{{vid}}", ["GET"], vread),
    Route(f"{F}/{{rtype}}/{{rid}}/_history", ["GET"], history),
    Route(f"{F}/{{rtype}}/{{rid}}", ["GET"], read),
    Route(f"{F}/{{rtype}}/{{rid}}", ["PUT"], update),
    Route(f"{F}/{{rtype}}/{{rid}}", ["DELETE"], delete),
    Route(f"{F}/{{rtype}}", ["GET"], search_type),
    Route(f"{F}/{{rtype}}", ["POST"], create),
    Route(f"{F}/{{rtype}}", ["PUT"], conditional_update),
]

__all__ = ["ROUTES", "FORM_TYPE"]
