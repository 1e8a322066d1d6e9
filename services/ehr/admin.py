"""The platform admin API (not part of FHIR): tenant EHRs, SMART client registration, faults.

Every call needs ``Authorization: Bearer <VIGIL_EHR_ADMIN_SECRET>``.

- ``POST /admin/tenants``  body ``{"id": "<tenant>"}``  -> 201 created / 200 existed
- ``GET  /admin/tenants``
- ``PUT  /admin/tenants/<tenant>/clients/<client_id>``  body ``{"jwks": {...}, "scopes": ["system/*.rs"]}``
  (registering a revoked client again reinstates it)
- ``GET  /admin/tenants/<tenant>/clients``  -> ``{"clients": [{client_id, scopes, kids, created_at, revoked_at}]}``
- ``DELETE /admin/tenants/<tenant>/clients/<client_id>``  revoke: the next token request and the
  next call with an access token already issued to it are refused (401)
- ``POST /admin/tenants/<tenant>/inbox-links``  body ``{"practitioner": "<id>", "lifetime_s": 900}``
  -> 201 ``{url, practitioner, expires_at}``: a sign-in link of the inbox for that practitioner
  (signed, single use, 15 min unless ``lifetime_s`` says less or up to 1 h; 404 for a
  practitioner not in the tenant's EHR)
- ``PUT /admin/tenants/<tenant>/notify-signing-secret``  body ``{"secret": "<16-256 printable chars>"}``;
  ``GET`` -> ``{"set": bool, "fingerprint": <first 16 hex of its sha256> | null}`` (never the secret);
  ``DELETE`` stops signing. Every rest-hook POST of the tenant's Subscriptions then carries
  ``X-Vigil-Signature: sha256=<hex HMAC-SHA256 of the body, keyed by the secret>``. The secret is
  not in any FHIR resource, so a SMART client that reads Subscriptions cannot learn it.
- ``GET | PUT | DELETE /admin/tenants/<tenant>/faults``  body (PUT) ``{"latency_ms", "error_rate",
  "error_status", "retry_after_s", "outage_s", "drop_writes", "drop_notifications"}``
- ``GET | PUT /admin/tenants/<tenant>/family``  body (PUT) ``{"family": "epic-like" | "fhir-server"}``:
  which EHR family the tenant's FHIR API plays (services.ehr.families)
"""
from __future__ import annotations

import hashlib
import hmac
import re
from datetime import datetime, timezone

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from services.core.routes import Route
from services.core.tenancy import TenantError, check_tenant_id
from services.ehr import auth, families, faults
from services.ehr.http import base_url, read_json, services
from services.ehr.outcome import FhirError, bad_request, not_found
from services.ehr.inbox import session as inbox_session
from services.ehr.registry import Client
from services.ehr.validation import ID_RE

CLIENT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
NOTIFY_SECRET = re.compile(r"^[\x21-\x7e]{16,256}$")


def _authorize(request: Request) -> None:
    expected = services(request).settings.admin_secret
    given = request.headers.get("authorization", "")
    token = given[7:].strip() if given.lower().startswith("bearer ") else ""
    if not token or not hmac.compare_digest(token.encode(), expected.encode()):
        raise FhirError(401, "The admin API needs the platform admin secret as a bearer token", "login",
                        headers={"WWW-Authenticate": 'Bearer realm="vigil-ehr-admin"'})


async def _tenant(request: Request) -> str:
    tenant = request.path_params["tenant"]
    if await services(request).registry.tenant(tenant) is None:
        raise not_found(f"There is no EHR for tenant '{tenant[:40]}'")
    return tenant


async def create_tenant(request: Request) -> Response:
    _authorize(request)
    body = await read_json(request)
    try:
        tenant = check_tenant_id(body.get("id") if isinstance(body, dict) else None)
    except TenantError as exc:
        raise bad_request(str(exc)) from None
    created = await services(request).registry.create_tenant(tenant)
    return JSONResponse({"id": tenant, "fhir_base": base_url(request, tenant), "created": created},
                        201 if created else 200)


async def list_tenants(request: Request) -> Response:
    _authorize(request)
    return JSONResponse({"tenants": await services(request).registry.list_tenants()})


async def put_client(request: Request) -> Response:
    _authorize(request)
    tenant = await _tenant(request)
    client_id = request.path_params["client_id"]
    if not CLIENT_ID.match(client_id):
        raise bad_request("client_id must be 1-128 of A-Z a-z 0-9 . _ : -")
    body = await read_json(request)
    if not isinstance(body, dict):
        raise bad_request("body must be a JSON object with jwks and scopes")
    try:
        jwks = auth.check_jwks(body.get("jwks"))
        scopes = body.get("scopes")
        if not isinstance(scopes, list) or not scopes or not all(isinstance(s, str) for s in scopes):
            raise ValueError("scopes must be a non-empty list of strings")
        for scope in scopes:
            auth.parse_scope(scope)
    except ValueError as exc:
        raise bad_request(str(exc)) from None
    await services(request).registry.put_client(Client(tenant, client_id, jwks, tuple(scopes)))
    base = base_url(request, tenant)
    return JSONResponse({"tenant": tenant, "client_id": client_id, "scopes": scopes,
                         "token_endpoint": f"{base}/auth/token", "fhir_base": base})


async def list_clients(request: Request) -> Response:
    _authorize(request)
    tenant = await _tenant(request)
    return JSONResponse({"tenant": tenant,
                         "clients": [c.as_dict() for c in await services(request).registry.list_clients(tenant)]})


async def revoke_client(request: Request) -> Response:
    _authorize(request)
    tenant = await _tenant(request)
    client_id = request.path_params["client_id"]
    if not CLIENT_ID.match(client_id):
        raise bad_request("client_id must be 1-128 of A-Z a-z 0-9 . _ : -")
    revoked = await services(request).registry.revoke_client(tenant, client_id)
    if revoked is None:
        raise not_found(f"There is no client '{client_id}' for tenant '{tenant}'")
    return JSONResponse({"tenant": tenant, "client_id": client_id, "revoked_at": revoked.isoformat()})


async def inbox_link(request: Request) -> Response:
    _authorize(request)
    tenant = await _tenant(request)
    body = await read_json(request)
    practitioner = body.get("practitioner") if isinstance(body, dict) else None
    lifetime = body.get("lifetime_s", inbox_session.LINK_LIFETIME_S) if isinstance(body, dict) else None
    if not isinstance(practitioner, str) or not ID_RE.match(practitioner):
        raise bad_request("practitioner must be the id of a Practitioner of this EHR")
    if type(lifetime) is not int or not 0 < lifetime <= inbox_session.LINK_LIFETIME_MAX_S:
        raise bad_request(f"lifetime_s must be an integer 1-{inbox_session.LINK_LIFETIME_MAX_S}")
    svc = services(request)
    async with svc.store.transaction(tenant) as tx:
        try:
            await tx.read("Practitioner", practitioner)
        except FhirError:
            raise not_found(f"There is no Practitioner '{practitioner}' for tenant '{tenant}'") from None
    token = inbox_session.issue_link(svc.settings.admin_secret, tenant, practitioner, lifetime)
    link = inbox_session.read_link(svc.settings.admin_secret, tenant, token)
    root = svc.settings.public_url or str(request.base_url).rstrip("/")
    return JSONResponse({"tenant": tenant, "practitioner": practitioner,
                         "url": f"{root}/inbox/{tenant}/login?token={token}",
                         "expires_at": datetime.fromtimestamp(link.expires, timezone.utc).isoformat()}, 201)


def _fingerprint(secret: str | None) -> dict:
    return {"set": secret is not None,
            "fingerprint": hashlib.sha256(secret.encode()).hexdigest()[:16] if secret is not None else None}


async def put_notify_secret(request: Request) -> Response:
    _authorize(request)
    tenant = await _tenant(request)
    body = await read_json(request)
    secret = body.get("secret") if isinstance(body, dict) else None
    if not isinstance(secret, str) or not NOTIFY_SECRET.match(secret):
        raise bad_request("secret must be 16-256 printable ASCII characters")
    await services(request).registry.set_notify_secret(tenant, secret)
    return JSONResponse(_fingerprint(secret))


async def get_notify_secret(request: Request) -> Response:
    _authorize(request)
    tenant = await _tenant(request)
    return JSONResponse(_fingerprint(await services(request).registry.notify_secret(tenant)))


async def delete_notify_secret(request: Request) -> Response:
    _authorize(request)
    tenant = await _tenant(request)
    await services(request).registry.set_notify_secret(tenant, None)
    return JSONResponse(_fingerprint(None))


async def get_faults(request: Request) -> Response:
    _authorize(request)
    state = await services(request).registry.tenant(await _tenant(request))
    return JSONResponse(state.faults.as_dict())


async def put_faults(request: Request) -> Response:
    _authorize(request)
    tenant = await _tenant(request)
    try:
        settings = faults.from_request(await read_json(request))
    except ValueError as exc:
        raise bad_request(str(exc)) from None
    await services(request).registry.set_faults(tenant, settings)
    return JSONResponse(settings.as_dict())


async def clear_faults(request: Request) -> Response:
    _authorize(request)
    tenant = await _tenant(request)
    await services(request).registry.set_faults(tenant, faults.Faults())
    return JSONResponse(faults.Faults().as_dict())


async def get_family(request: Request) -> Response:
    _authorize(request)
    state = await services(request).registry.tenant(await _tenant(request))
    return JSONResponse({"tenant": state.id, "family": state.family})


async def put_family(request: Request) -> Response:
    _authorize(request)
    tenant = await _tenant(request)
    body = await read_json(request)
    try:
        if not isinstance(body, dict) or set(body) != {"family"}:
            raise ValueError("body must be a JSON object with exactly one field, family")
        family = families.check_family(body["family"])
    except ValueError as exc:
        raise bad_request(str(exc)) from None
    await services(request).registry.set_family(tenant, family)
    return JSONResponse({"tenant": tenant, "family": family})


ROUTES: list[Route] = [
    Route("/admin/tenants", ["POST"], create_tenant),
    Route("/admin/tenants", ["GET"], list_tenants),
    Route("/admin/tenants/{tenant}/clients", ["GET"], list_clients),
    Route("/admin/tenants/{tenant}/clients/{client_id}", ["PUT"], put_client),
    Route("/admin/tenants/{tenant}/clients/{client_id}", ["DELETE"], revoke_client),
    Route("/admin/tenants/{tenant}/inbox-links", ["POST"], inbox_link),
    Route("/admin/tenants/{tenant}/notify-signing-secret", ["GET"], get_notify_secret),
    Route("/admin/tenants/{tenant}/notify-signing-secret", ["PUT"], put_notify_secret),
    Route("/admin/tenants/{tenant}/notify-signing-secret", ["DELETE"], delete_notify_secret),
    Route("/admin/tenants/{tenant}/faults", ["GET"], get_faults),
    Route("/admin/tenants/{tenant}/faults", ["PUT"], put_faults),
    Route("/admin/tenants/{tenant}/faults", ["DELETE"], clear_faults),
    Route("/admin/tenants/{tenant}/family", ["GET"], get_family),
    Route("/admin/tenants/{tenant}/family", ["PUT"], put_family),
]
