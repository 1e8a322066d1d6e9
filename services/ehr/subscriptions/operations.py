"""``Subscription/$status`` and ``Subscription/$events`` (Backport IG operations), and the route
table the app inserts ahead of the generic FHIR routes.

- ``GET|POST [base]/Subscription/<id>/$status`` and ``[base]/Subscription/$status?id=..&status=..``:
  a ``searchset`` Bundle with one SubscriptionStatus ``Parameters`` (type ``query-status``) per
  Subscription (the IG's definition of ``$status``).
- ``GET|POST [base]/Subscription/<id>/$events?eventsSinceNumber=&eventsUntilNumber=&content=``:
  a notification Bundle (``history``, type ``query-event``) with the retained events in the
  inclusive range, oldest first, at most ``MAX_EVENTS_PER_QUERY``; ``content`` (empty | id-only
  | full-resource) defaults to the Subscription's own.
Parameters come from the query string or, for POST, a ``Parameters`` body.
"""
from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from services.core.routes import Route
from services.ehr import families
from services.ehr.http import Ctx, context, read_json
from services.ehr.outcome import bad_request, fhir_response, not_found
from services.ehr.subscriptions import bundles, store as substore
from services.ehr.subscriptions.spec import CONTENTS
from services.ehr.validation import check_id
from services.ehr.values import whole_number

MAX_EVENTS_PER_QUERY = 1000
_STATUSES = ("requested", "active", "error", "off")


async def _params(request: Request) -> list[tuple[str, str]]:
    pairs = list(request.query_params.multi_items())
    if request.method == "POST":
        body = await read_json(request)
        if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
            raise bad_request("The operation's POST body must be a Parameters resource")
        for p in body.get("parameter") or []:
            if not isinstance(p, dict) or not isinstance(p.get("name"), str):
                raise bad_request("Every parameter needs a name")
            value = next((v for k, v in p.items() if k.startswith("value")), None)
            if not isinstance(value, (str, int)) or isinstance(value, bool):
                raise bad_request(f"Parameter '{p['name'][:40]}' needs a simple value")
            pairs.append((p["name"], str(value)))
    return pairs


def _offered(ctx: Ctx) -> Ctx:
    """An epic-like EHR has no Subscriptions, so no Subscription operations either (403)."""
    families.check_search(ctx.tenant.family, "Subscription", [])
    return ctx


def _number(name: str, raw: str) -> int:
    """An event number (a bigint in the event store)."""
    return whole_number(name, raw.strip(), 0, 2**63 - 1)


async def status_instance(request: Request) -> Response:
    ctx = _offered(await context(request))
    ctx.require("Subscription", "r")
    sid = check_id(request.path_params["rid"])
    await _params(request)  # instance level: id and status are ignored (IG), but the body must be valid
    async with ctx.store.transaction(ctx.tenant.id) as tx:
        st = await substore.get(tx.conn, ctx.tenant.id, sid)
    if st is None:
        raise not_found(f"Subscription/{sid} is not a topic-based subscription known here")
    return fhir_response(bundles.status_searchset([st]))


async def status_type(request: Request) -> Response:
    ctx = _offered(await context(request))
    ctx.require("Subscription", "s")
    ids, statuses = [], []
    for name, value in await _params(request):
        if name == "id":
            ids.extend(check_id(v) for v in value.split(",") if v)
        elif name == "status":
            for v in value.split(","):
                if v not in _STATUSES:
                    raise bad_request(f"status must be one of {', '.join(_STATUSES)}")
                statuses.append(v)
        elif name not in ("_format", "_pretty"):
            raise bad_request(f"$status does not take the parameter '{name[:40]}'", "not-supported")
    async with ctx.store.transaction(ctx.tenant.id) as tx:
        states = await substore.list_for(tx.conn, ctx.tenant.id, ids or None, statuses or None)
    return fhir_response(bundles.status_searchset(states))


async def events(request: Request) -> Response:
    ctx = _offered(await context(request))
    ctx.require("Subscription", "r")
    sid = check_id(request.path_params["rid"])
    low, high, content = 1, None, None
    for name, value in await _params(request):
        if name == "eventsSinceNumber":
            low = max(1, _number(name, value))
        elif name == "eventsUntilNumber":
            high = _number(name, value)
        elif name == "content":
            if value not in CONTENTS:
                raise bad_request(f"content must be one of {', '.join(CONTENTS)}")
            content = value
        elif name not in ("_format", "_pretty"):
            raise bad_request(f"$events does not take the parameter '{name[:40]}'", "not-supported")
    if high is not None and high < low:
        raise bad_request("eventsUntilNumber is lower than eventsSinceNumber")
    async with ctx.store.transaction(ctx.tenant.id) as tx:
        st = await substore.get(tx.conn, ctx.tenant.id, sid)
        if st is None:
            raise not_found(f"Subscription/{sid} is not a topic-based subscription known here")
        high = st.events_since_start if high is None else min(high, st.events_since_start)
        content = content or st.spec.content
        found = await substore.events(tx.conn, ctx.tenant.id, sid, low, high, MAX_EVENTS_PER_QUERY,
                                      with_content=content == "full-resource")
    return fhir_response(bundles.notification(st, "query-event", found, content=content))


def _f(path: str) -> str:
    return "/fhir/{tenant}/Subscription" + path


#: Inserted before the generic /{rtype}/{rid} routes (first match wins).
ROUTES: list[Route] = [
    Route(_f("/$status"), ["GET", "POST"], status_type),
    Route(_f("/{rid}/$status"), ["GET", "POST"], status_instance),
    Route(_f("/{rid}/$events"), ["GET", "POST"], events),
]
