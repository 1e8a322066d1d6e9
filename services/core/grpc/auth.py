"""Server-side authentication: the bearer credential of every non-public call is verified, the
caller's tenant comes from it (``current_caller()``), and a request naming another tenant is refused."""
from __future__ import annotations

import contextvars
import time
from typing import TYPE_CHECKING, Awaitable, Callable, Sequence

import grpc

from services.core import errors
from services.core.grpc.status import abort
from services.core.logging import get_logger
from services.core.tokens import ADMIN_ROLE, CLOCK_SKEW_SECONDS, Claims, TokenSettings, verify

if TYPE_CHECKING:
    from services.core.revocation import DenyList

log = get_logger("vigil.grpc")

#: Methods callable without a credential: probes and schema discovery.
PUBLIC_METHOD_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.v1alpha.ServerReflection/",
                          "/grpc.reflection.v1.ServerReflection/")
#: Roles a server admits unless it names its own: Vigil's own services only. Operator and
#: platform-admin credentials are for the control service, which names them (least privilege:
#: an operator credential cannot read notes through the tools service).
SERVICE_ROLES = ("service",)
DEFAULT_ROLES = SERVICE_ROLES
#: Verified credentials remembered by exact token until they expire (a JWT verification costs
#: ~0.1-0.2 ms of CPU; callers reuse a token for minutes). Cleared wholesale when full.
VERIFIED_CACHE_SIZE = 4096


#: ``await hook(method, claims, request, error)`` for a verified caller refused with PERMISSION_DENIED.
DenialHook = Callable[[str, Claims, object, errors.VigilError], Awaitable[None]]

_CALLER: contextvars.ContextVar[Claims | None] = contextvars.ContextVar("vigil_grpc_caller", default=None)


def current_caller() -> Claims:
    """The verified credential of the call being handled (set by ``AuthInterceptor``)."""
    caller = _CALLER.get()
    if caller is None:
        raise errors.UnauthenticatedError("no verified caller for this call", code="no_caller")
    return caller


def check_request_tenant(request: object, caller: Claims) -> None:
    """A request may name a tenant only if it is the caller's own; anything else is an attack."""
    descriptor = getattr(request, "DESCRIPTOR", None)
    if descriptor is None or "tenant" not in descriptor.fields_by_name or caller.role == ADMIN_ROLE:
        return  # a platform-admin credential spans tenants (services decide what it may do)
    named = getattr(request, "tenant")
    if named and named != caller.tenant:
        raise errors.PermissionDeniedError("request names a tenant other than the credential's",
                                           code="tenant_mismatch")


def _bearer(metadata) -> str | None:
    for key, value in metadata or ():
        if key.lower() == "authorization" and isinstance(value, str) and value.startswith("Bearer "):
            return value[len("Bearer "):].strip()
    return None


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Verifies the bearer credential of every non-public call and maps handler errors to statuses."""

    def __init__(self, tokens: TokenSettings, allowed_roles: Sequence[str] = DEFAULT_ROLES,
                 on_denied: DenialHook | None = None, revocations: "DenyList | None" = None):
        self.tokens = tokens
        self.allowed_roles = tuple(allowed_roles)
        self.on_denied = on_denied
        self.revocations = revocations
        self._verified: dict[str, Claims] = {}

    async def _denied(self, method: str, metadata, request, exc: errors.VigilError) -> None:
        """Report a PERMISSION_DENIED of a verified caller (for audit); the hook's errors are logged."""
        if self.on_denied is None or not isinstance(exc, errors.PermissionDeniedError):
            return
        try:
            claims = verify(self.tokens, _bearer(metadata) or "")
        except errors.VigilError:
            return
        try:
            await self.on_denied(method, claims, request, exc)
        except Exception as hook_exc:  # the denial stands either way
            log.error("grpc.denial_hook_failed", method=method, error_type=type(hook_exc).__name__)

    def _authenticate(self, metadata) -> Claims:
        token = _bearer(metadata)
        if token is None:
            raise errors.UnauthenticatedError("missing bearer credential", code="token_missing")
        claims = self._verified.get(token)
        if claims is None or claims.exp + CLOCK_SKEW_SECONDS <= time.time():
            claims = verify(self.tokens, token)       # raises for an expired or forged token
            if len(self._verified) >= VERIFIED_CACHE_SIZE:
                self._verified.clear()
            self._verified[token] = claims
        if claims.role not in self.allowed_roles:
            raise errors.PermissionDeniedError("role not allowed on this service", code="role_denied")
        return claims

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(PUBLIC_METHOD_PREFIXES):
            return handler
        if handler.response_streaming and not handler.request_streaming:
            return self._guard_unary_stream(handler, method)
        if handler.request_streaming or handler.response_streaming:
            # Client-streaming calls are not defined by Vigil's protos; refuse rather than run unauthenticated.
            async def refuse(request, context):
                await context.abort(grpc.StatusCode.UNIMPLEMENTED, "streaming calls are not supported")
            return grpc.unary_unary_rpc_method_handler(refuse, handler.request_deserializer,
                                                       handler.response_serializer)
        behavior = handler.unary_unary

        async def guarded(request, context):
            claims = await self._admit(method, request, context)
            if claims is None:
                return None
            token = _CALLER.set(claims)
            try:
                return await behavior(request, context)
            except grpc.aio.AbortError:
                raise
            except Exception as exc:  # mapped to a status in one place; nothing swallowed
                await abort(context, exc, method)
            finally:
                _CALLER.reset(token)

        return grpc.unary_unary_rpc_method_handler(guarded, request_deserializer=handler.request_deserializer,
                                                   response_serializer=handler.response_serializer)

    async def _admit(self, method: str, request, context):
        """The caller's verified claims, or None after the call was refused (audited, aborted)."""
        try:
            claims = self._authenticate(context.invocation_metadata())
            if self.revocations is not None:
                await self.revocations.check(claims.jti)
            check_request_tenant(request, claims)
            return claims
        except errors.VigilError as exc:
            await self._denied(method, context.invocation_metadata(), request, exc)
            await abort(context, exc, method)
            return None

    def _guard_unary_stream(self, handler, method: str):
        """Server-streaming calls (e.g. progress of a long job): same credential checks per call."""
        behavior = handler.unary_stream

        async def guarded(request, context):
            claims = await self._admit(method, request, context)
            if claims is None:
                return
            token = _CALLER.set(claims)
            try:
                async for message in behavior(request, context):
                    yield message
            except grpc.aio.AbortError:
                raise
            except Exception as exc:  # mapped to a status in one place; nothing swallowed
                await abort(context, exc, method)
            finally:
                _CALLER.reset(token)

        return grpc.unary_stream_rpc_method_handler(guarded, request_deserializer=handler.request_deserializer,
                                                    response_serializer=handler.response_serializer)
