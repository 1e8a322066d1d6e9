"""Request plumbing shared by the handlers: the per-request context (tenant, faults, auth),
bounded body reading, Prefer handling and resource responses."""
from __future__ import annotations

from dataclasses import dataclass
from email.utils import format_datetime

from starlette.requests import Request
from starlette.responses import Response

from services.core.tenancy import TENANT_ID
from services.ehr import families
from services.ehr.auth import Principal, TokenService
from services.ehr.config import EhrSettings
from services.ehr.outcome import FhirError, fhir_response, issue, not_found, operation_outcome
from services.ehr.registry import Registry, TenantState
from services.ehr.storage import Store, Stored
from services.ehr.validation import parse_json

JSON_TYPES = ("application/fhir+json", "application/json", "application/json+fhir")
FORM_TYPE = "application/x-www-form-urlencoded"
#: Permissions that write (SMART v2 letters): create, update, delete.
WRITE_PERMS = ("c", "u", "d")


@dataclass
class Services:
    settings: EhrSettings
    store: Store
    registry: Registry
    tokens: TokenService


@dataclass
class Ctx:
    services: Services
    tenant: TenantState
    principal: Principal | None
    base: str

    @property
    def store(self) -> Store:
        return self.services.store

    def require(self, rtype: str, perm: str) -> None:
        """The client's scopes allow ``perm`` on ``rtype``, and the EHR family accepts a write of it."""
        assert self.principal is not None
        self.principal.require(rtype, perm)
        if perm in WRITE_PERMS:
            families.check_write(self.tenant.family, rtype)


def services(request: Request) -> Services:
    return request.app.state.ehr


def base_url(request: Request, tenant: str) -> str:
    root = services(request).settings.public_url or str(request.base_url).rstrip("/")
    return f"{root}/fhir/{tenant}"


async def context(request: Request, *, auth: bool = True) -> Ctx:
    svc = services(request)
    tenant = request.path_params["tenant"]
    state = await svc.registry.tenant(tenant) if TENANT_ID.match(tenant) else None
    if state is None:
        raise not_found(f"There is no EHR for tenant '{tenant[:40]}'")
    from services.ehr import faults

    await faults.apply(state.faults)
    principal = await svc.tokens.verify(tenant, request.headers.get("authorization")) if auth else None
    return Ctx(svc, state, principal, base_url(request, tenant))


async def read_body(request: Request, *, form: bool = False) -> bytes:
    limit = services(request).settings.max_body_bytes
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    allowed = (FORM_TYPE,) if form else JSON_TYPES
    if ctype and ctype not in allowed:
        raise FhirError(415, f"Content-Type '{ctype[:60]}' is not supported; use {allowed[0]}", "not-supported")
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and (len(declared) > 18 or int(declared) > limit):
        raise FhirError(413, f"The request body is larger than {limit} bytes", "too-costly")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise FhirError(413, f"The request body is larger than {limit} bytes", "too-costly")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request) -> object:
    return parse_json(await read_body(request))


def prefer_return(request: Request) -> str:
    for part in request.headers.get("prefer", "").split(";"):
        key, _, value = part.strip().partition("=")
        if key.strip() == "return":
            return value.strip().strip('"')
    return "representation"


def resource_response(request: Request, ctx: Ctx, stored: Stored, status: int = 200, *,
                      location: bool = False) -> Response:
    headers = {"ETag": stored.etag, "Last-Modified": format_datetime(stored.last_updated, usegmt=True)}
    if location:
        headers["Location"] = f"{ctx.base}/{stored.type}/{stored.id}/_history/{stored.version}"
    mode = prefer_return(request)
    if mode == "minimal" and status in (200, 201):
        return fhir_response(None, status, headers)
    if mode == "OperationOutcome":
        text = f"{stored.type}/{stored.id} version {stored.version}"
        return fhir_response(operation_outcome([issue("informational", text, "information")]), status, headers)
    return fhir_response(stored.content, status, headers)
