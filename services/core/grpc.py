"""gRPC plumbing shared by every Vigil gRPC service and client.

Server side: ``start_server`` builds a ``grpc.aio`` server with grpc health (grpc.health.v1)
and reflection always on, and the ``AuthInterceptor``: every call (except health and
reflection) must carry ``authorization: Bearer <jwt>`` (see ``services.core.tokens``). The
caller's tenant comes from the credential, is available to handlers as ``current_caller()``,
and a request whose ``tenant`` field names another tenant is refused with PERMISSION_DENIED.
Errors raised by handlers are mapped to status codes by ``ERROR_STATUS`` (the one place).

Client side: ``connect(settings, service, tokens, tenant)`` opens a channel to a named service
whose every call carries that tenant's credential; ``error_from_rpc`` maps a failed call back
into ``services.core.errors``.

Settings (``GrpcSettings.from_env``):
  VIGIL_GRPC_<SERVICE>_ADDR     host:port of a service (defaults in ``DEFAULT_ADDRESSES``)
  VIGIL_GRPC_TLS                off | tls | mtls  (off is refused when VIGIL_ENV=prod)
  VIGIL_GRPC_TLS_CERT_FILE      this process's certificate chain (PEM): server cert, or client cert for mtls
  VIGIL_GRPC_TLS_KEY_FILE       its private key (PEM)
  VIGIL_GRPC_TLS_CA_FILE        CA bundle used to verify peers (clients verify servers; mtls servers verify clients)
  VIGIL_GRPC_TLS_SERVER_NAME    optional name to verify the server certificate against
  VIGIL_GRPC_HEALTH_PORT        optional: also serve grpc.health.v1 (only) in plaintext on this port, for
                                kubelet gRPC probes, which cannot present a client certificate
  plus the token settings of ``services.core.tokens``.
"""
from __future__ import annotations

import contextvars
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Awaitable, Callable, Mapping, Sequence

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.core import errors
from services.core.config import ConfigError
from services.core.logging import get_logger
from services.core.tenantcache import TenantCache
from services.core.tokens import ADMIN_ROLE, CLOCK_SKEW_SECONDS, Claims, TokenSettings, TokenSource, verify

if TYPE_CHECKING:
    from services.core.revocation import DenyList

log = get_logger("vigil.grpc")

TLS_MODES = ("off", "tls", "mtls")
DEFAULT_ADDRESSES = {"inference": "127.0.0.1:50061", "tools": "127.0.0.1:50062", "control": "127.0.0.1:50063"}
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
#: Largest message either side accepts: a long note (a few hundred kB of UTF-8) fits many times over.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
MESSAGE_OPTIONS = (("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                   ("grpc.max_send_message_length", MAX_MESSAGE_BYTES))
RETRY_AFTER_METADATA = "retry-after"
ERROR_CODE_METADATA = "vigil-error-code"

#: VigilError class -> status code; first match wins, so subclasses come before their bases.
ERROR_STATUS: Sequence[tuple[type[errors.VigilError], grpc.StatusCode]] = (
    (errors.UnauthenticatedError, grpc.StatusCode.UNAUTHENTICATED),
    (errors.PermissionDeniedError, grpc.StatusCode.PERMISSION_DENIED),
    (errors.NotFoundError, grpc.StatusCode.NOT_FOUND),
    (errors.ConflictError, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.ValidationError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.RetryableError, grpc.StatusCode.UNAVAILABLE),
    (errors.FatalError, grpc.StatusCode.INTERNAL),
)
#: Retryable errors with these codes get a more precise status than UNAVAILABLE.
RETRYABLE_CODE_STATUS = {"timeout": grpc.StatusCode.DEADLINE_EXCEEDED,
                         "http_429": grpc.StatusCode.RESOURCE_EXHAUSTED,
                         "budget_exhausted": grpc.StatusCode.RESOURCE_EXHAUSTED}
#: Reverse direction, for clients: status code -> error class.
STATUS_ERROR = {
    grpc.StatusCode.UNAUTHENTICATED: errors.UnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: errors.PermissionDeniedError,
    grpc.StatusCode.NOT_FOUND: errors.NotFoundError,
    grpc.StatusCode.FAILED_PRECONDITION: errors.ConflictError,
    grpc.StatusCode.INVALID_ARGUMENT: errors.ValidationError,
    grpc.StatusCode.UNAVAILABLE: errors.RetryableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: errors.RetryableError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: errors.RetryableError,
}


def status_of(exc: BaseException) -> grpc.StatusCode:
    err = errors.classify(exc)
    if isinstance(err, errors.RetryableError) and err.code in RETRYABLE_CODE_STATUS:
        return RETRYABLE_CODE_STATUS[err.code]
    for cls, status in ERROR_STATUS:
        if isinstance(err, cls):
            return status
    return grpc.StatusCode.INTERNAL


def error_from_rpc(exc: grpc.aio.AioRpcError) -> errors.VigilError:
    """A failed call as our error hierarchy (retry_after from trailing metadata)."""
    trailing = dict(exc.trailing_metadata() or ())
    code = trailing.get(ERROR_CODE_METADATA) or f"grpc_{exc.code().name.lower()}"
    cls = STATUS_ERROR.get(exc.code(), errors.FatalError)
    message = exc.details() or exc.code().name
    if issubclass(cls, errors.RetryableError):
        raw = trailing.get(RETRY_AFTER_METADATA)
        return cls(message, code=code, retry_after=float(raw) if raw else None)
    return cls(message, code=code)


# ---------------------------------------------------------------- settings


@dataclass(frozen=True)
class GrpcSettings:
    environment: str
    addresses: Mapping[str, str]
    tls: str = "off"
    cert_chain: bytes | None = field(default=None, repr=False)
    private_key: bytes | None = field(default=None, repr=False)
    ca_bundle: bytes | None = field(default=None, repr=False)
    server_name: str | None = None
    health_port: int | None = None
    tokens: TokenSettings = field(default_factory=TokenSettings.for_tests, repr=False)

    def address(self, service: str) -> str:
        try:
            return self.addresses[service]
        except KeyError:
            raise ConfigError(f"no address for gRPC service {service!r}; set VIGIL_GRPC_{service.upper()}_ADDR") \
                from None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "GrpcSettings":
        source = os.environ if env is None else env
        environment = source.get("VIGIL_ENV") or "dev"
        addresses = dict(DEFAULT_ADDRESSES)
        for name in list(DEFAULT_ADDRESSES):
            raw = source.get(f"VIGIL_GRPC_{name.upper()}_ADDR")
            if raw:
                host, sep, port = raw.rpartition(":")
                if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                    raise ConfigError(f"VIGIL_GRPC_{name.upper()}_ADDR={raw!r}: expected HOST:PORT")
                addresses[name] = raw
        tls = source.get("VIGIL_GRPC_TLS") or "off"
        if tls not in TLS_MODES:
            raise ConfigError(f"VIGIL_GRPC_TLS={tls!r}: expected one of {', '.join(TLS_MODES)}")
        if tls == "off" and environment == "prod":
            raise ConfigError("VIGIL_GRPC_TLS=off is refused when VIGIL_ENV=prod; use tls or mtls")

        def read(name: str, required: bool) -> bytes | None:
            path = source.get(name)
            if not path:
                if required:
                    raise ConfigError(f"{name} is required when VIGIL_GRPC_TLS={tls}")
                return None
            try:
                return Path(path).expanduser().read_bytes()
            except OSError as exc:
                raise ConfigError(f"{name}={path!r}: cannot read ({exc.strerror})") from None

        raw_health = source.get("VIGIL_GRPC_HEALTH_PORT") or ""
        if raw_health and (not raw_health.isdigit() or not 0 < int(raw_health) < 65536):
            raise ConfigError(f"VIGIL_GRPC_HEALTH_PORT={raw_health!r}: expected a port number")
        cert = read("VIGIL_GRPC_TLS_CERT_FILE", tls == "mtls")
        key = read("VIGIL_GRPC_TLS_KEY_FILE", tls == "mtls" or cert is not None)
        ca = read("VIGIL_GRPC_TLS_CA_FILE", tls == "mtls")
        return cls(environment=environment, addresses=addresses, tls=tls, cert_chain=cert, private_key=key,
                   ca_bundle=ca, server_name=source.get("VIGIL_GRPC_TLS_SERVER_NAME") or None,
                   health_port=int(raw_health) if raw_health else None,
                   tokens=TokenSettings.from_env(source))

    def server_credentials(self) -> grpc.ServerCredentials | None:
        if self.tls == "off":
            return None
        if not self.cert_chain or not self.private_key:
            raise ConfigError("serving with TLS needs VIGIL_GRPC_TLS_CERT_FILE and VIGIL_GRPC_TLS_KEY_FILE")
        return grpc.ssl_server_credentials([(self.private_key, self.cert_chain)],
                                           root_certificates=self.ca_bundle if self.tls == "mtls" else None,
                                           require_client_auth=self.tls == "mtls")

    def channel_credentials(self) -> grpc.ChannelCredentials | None:
        if self.tls == "off":
            return None
        if self.tls == "mtls":
            return grpc.ssl_channel_credentials(root_certificates=self.ca_bundle, private_key=self.private_key,
                                                certificate_chain=self.cert_chain)
        return grpc.ssl_channel_credentials(root_certificates=self.ca_bundle)


# ---------------------------------------------------------------- server: authentication and errors

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


async def _abort(context: grpc.aio.ServicerContext, exc: BaseException, method: str) -> None:
    err = errors.classify(exc)
    status = status_of(err)
    trailing = [(ERROR_CODE_METADATA, err.code)]
    if isinstance(err, errors.RetryableError) and err.retry_after is not None:
        trailing.append((RETRY_AFTER_METADATA, f"{err.retry_after:.3f}"))
    if status == grpc.StatusCode.INTERNAL and not isinstance(exc, errors.VigilError):
        log.error("grpc.unexpected_error", method=method, error_type=type(exc).__name__)
        message = "internal error"
    else:
        log.info("grpc.call_failed", method=method, status=status.name, error_code=err.code)
        message = str(err) or err.code
    context.set_trailing_metadata(tuple(trailing))
    await context.abort(status, message)


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
                await _abort(context, exc, method)
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
            await _abort(context, exc, method)
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
                await _abort(context, exc, method)
            finally:
                _CALLER.reset(token)

        return grpc.unary_stream_rpc_method_handler(guarded, request_deserializer=handler.request_deserializer,
                                                    response_serializer=handler.response_serializer)


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    health_server: grpc.aio.Server | None = None
    health_port: int | None = None
    revocations: "DenyList | None" = None

    async def stop(self, grace: float | None = 1.0) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        if self.health_server is not None:
            await self.health_server.stop(grace)
        if self.revocations is not None:
            await self.revocations.close()


#: (add_XServicer_to_server, servicer instance, full service name from the pb2 DESCRIPTOR)
ServiceBinding = tuple[Callable, object, str]


async def start_server(bindings: Sequence[ServiceBinding], settings: GrpcSettings, address: str,
                       allowed_roles: Sequence[str] = DEFAULT_ROLES, health_address: str | None = None,
                       on_denied: DenialHook | None = None, revocations: "DenyList | None" = None) -> RunningServer:
    """Start serving ``bindings`` on ``address`` (port 0 picks a free port) with health and reflection.

    ``revocations``: the token deny list checked on every call (``services.core.revocation``);
    the server closes it when it stops.

    ``health_address`` (default: the host of ``address`` with VIGIL_GRPC_HEALTH_PORT, when set)
    additionally serves only grpc.health.v1, in plaintext, from the same health servicer."""
    server = grpc.aio.server(interceptors=[AuthInterceptor(settings.tokens, allowed_roles, on_denied, revocations)],
                             options=MESSAGE_OPTIONS)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = []
    for add, servicer, name in bindings:
        add(servicer, server)
        names.append(name)
    reflection.enable_server_reflection(
        [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME], server)
    credentials = settings.server_credentials()
    port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    if port == 0:
        raise errors.FatalError("could not bind the gRPC address", code="bind_failed")
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    for name in names:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    if health_address is None and settings.health_port is not None:
        health_address = f"{address.rpartition(':')[0]}:{settings.health_port}"
    health_server = health_port = None
    if health_address is not None:
        health_server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, health_server)
        health_port = health_server.add_insecure_port(health_address)
        await health_server.start()
    log.info("grpc.serving", port=port, health_port=health_port, services=names, tls=settings.tls)
    return RunningServer(server, port, health_servicer, health_server, health_port, revocations)


# ---------------------------------------------------------------- client


class _BearerInterceptor(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, tokens: TokenSource, tenant: str):
        self.tokens = tokens
        self.tenant = tenant

    async def intercept_unary_unary(self, continuation, details, request):
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        metadata.add("authorization", f"Bearer {self.tokens.token(self.tenant)}")
        details = grpc.aio.ClientCallDetails(details.method, details.timeout, metadata, details.credentials,
                                             details.wait_for_ready)
        return await continuation(details, request)


def connect(settings: GrpcSettings, service: str, tokens: TokenSource, tenant: str,
            target: str | None = None) -> grpc.aio.Channel:
    """A channel to ``service`` whose calls carry ``tenant``'s credential (one channel per tenant)."""
    address = target or settings.address(service)
    interceptors = [_BearerInterceptor(tokens, tenant)]
    credentials = settings.channel_credentials()
    if credentials is None:
        return grpc.aio.insecure_channel(address, options=MESSAGE_OPTIONS, interceptors=interceptors)
    options = [*MESSAGE_OPTIONS]
    if settings.server_name:
        options.append(("grpc.ssl_target_name_override", settings.server_name))
    return grpc.aio.secure_channel(address, credentials, options=options, interceptors=interceptors)


class Channels:
    """The channels of one calling service: one per (service, tenant), opened on first use.

        channels = Channels(GrpcSettings.from_env(), sub="extraction")
        stub = inference_pb2_grpc.InferenceStub(channels.get("inference", tenant))
        reply = await stub.Extract(inference_pb2.ExtractRequest(...), timeout=30)
        ...
        await channels.close()
    """

    def __init__(self, settings: GrpcSettings, sub: str, role: str = "service",
                 targets: Mapping[str, str] | None = None):
        self.settings = settings
        self.tokens = TokenSource(settings.tokens, sub=sub, role=role)
        self.targets = dict(targets or {})
        self._channels: TenantCache[grpc.aio.Channel] = TenantCache(name="grpc")

    def get(self, service: str, tenant: str) -> grpc.aio.Channel:
        return self._channels.get_now((service, tenant), lambda: connect(
            self.settings, service, self.tokens, tenant, target=self.targets.get(service)))

    async def close(self) -> None:
        await self._channels.close()
