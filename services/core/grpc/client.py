"""Client side: channels to Vigil's gRPC services whose every call carries a tenant's credential."""
from __future__ import annotations

from typing import Mapping

import grpc

from services.core.grpc.settings import MESSAGE_OPTIONS, GrpcSettings
from services.core.tenantcache import TenantCache
from services.core.tokens import TokenSource


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
