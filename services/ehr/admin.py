"""The platform admin API (not part of FHIR): tenant EHRs, SMART client registration, faults.

Every call needs ``Authorization: Bearer <VIGIL_EHR_ADMIN_SECRET>``.

- ``POST /admin/tenants``  body ``{"id": "<tenant>"}``  -> 201 created / 200 existed
- ``GET  /admin/tenants``
- ``PUT  /admin/tenants/<tenant>/clients/<client_id>``  body ``{"jwks": {...}, "scopes": ["system/*.rs"]}``
  (registering a revoked client again reinstates it)
- ``GET  /admin/tenants/<tenant>/clients``  -> ``{"clients": [{client_id, scopes, kids, created_at, revoked_at}]}``
- ``DELETE /admin/tenants/<tenant>/clients/<client_id>``  revoke: the next token request and the
  next call with an access token already issued to it are refused (401)
- ``GET | PUT | DELETE /admin/tenants/<tenant>/faults``  body (PUT) ``{"latency_ms", "error_rate",
  "error_status", "retry_after_s", "outage_s", "drop_writes", "drop_notifications"}``
- ``GET | PUT /admin/tenants/<tenant>/family``  body (PUT) ``{"family": "epic-like" | "fhir-server"}``:
  which EHR family the tenant's FHIR API plays (services.ehr.families)
"""
from __future__ import annotations

import hmac
import re

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from services.core.tenancy import TenantError, check_tenant_id
from services.ehr import auth, families, faults
from services.ehr.http import base_url, read_json, services
from services.ehr.outcome import FhirError, bad_request, not_found
from services.ehr.registry import Client

CLIENT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


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


ROUTES = [
    ("/admin/tenants", ["POST"], create_tenant),
    ("/admin/tenants", ["GET"], list_tenants),
    ("/admin/tenants/{tenant}/clients", ["GET"], list_clients),
    ("/admin/tenants/{tenant}/clients/{client_id}", ["PUT"], put_client),
    ("/admin/tenants/{tenant}/clients/{client_id}", ["DELETE"], revoke_client),
    ("/admin/tenants/{tenant}/faults", ["GET"], get_faults),
    ("/admin/tenants/{tenant}/faults", ["PUT"], put_faults),
    ("/admin/tenants/{tenant}/faults", ["DELETE"], clear_faults),
    ("/admin/tenants/{tenant}/family", ["GET"], get_family),
    ("/admin/tenants/{tenant}/family", ["PUT"], put_family),
]
