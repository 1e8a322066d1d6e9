"""Per-tenant gRPC stubs for agents: one channel per (service, tenant), each call carrying that
tenant's service credential (``services.core.grpc.client.connect``), and one call wrapper that maps a
failed RPC into ``services.core.errors`` (UNAVAILABLE / DEADLINE_EXCEEDED -> RetryableError).

    clients = AgentClients(grpc_settings, sub="extraction")
    note = await clients.call("tools", tenant, "GetNote", tools_pb2.GetNoteRequest(...))
    await clients.close()
"""
from __future__ import annotations

import grpc

from services.core.grpc.client import connect
from services.core.grpc.settings import GrpcSettings
from services.core.grpc.status import error_from_rpc
from services.core.tenantcache import TenantCache
from services.core.tokens import TokenSource

#: Deadline of one agent -> tools/inference call (seconds); the stage's handler timeout is larger.
CALL_DEADLINE_S = 20.0


def _stub_class(service: str):
    if service == "tools":
        from vigil.v1 import tools_pb2_grpc
        return tools_pb2_grpc.ToolsStub
    if service == "inference":
        from vigil.v1 import inference_pb2_grpc
        return inference_pb2_grpc.InferenceStub
    raise ValueError(f"no stub for gRPC service {service!r}")


class AgentClients:
    def __init__(self, settings: GrpcSettings, sub: str, *, targets: dict[str, str] | None = None,
                 deadline_s: float = CALL_DEADLINE_S):
        self.settings, self.tokens = settings, TokenSource(settings.tokens, sub=sub)
        self.targets, self.deadline_s = dict(targets or {}), deadline_s
        #: (service, tenant) -> (channel, stub); the cache closes the channel
        self._stubs: TenantCache[tuple[grpc.aio.Channel, object]] = TenantCache(
            close=lambda held: held[0].close(), name="grpc")

    def _open(self, service: str, tenant: str) -> tuple[grpc.aio.Channel, object]:
        channel = connect(self.settings, service, self.tokens, tenant, target=self.targets.get(service))
        return channel, _stub_class(service)(channel)

    def stub(self, service: str, tenant: str):
        """The stub of ``service`` for ``tenant`` over that tenant's own channel (made on first use)."""
        return self._stubs.get_now((service, tenant), lambda: self._open(service, tenant))[1]

    async def call(self, service: str, tenant: str, method: str, request):
        try:
            return await getattr(self.stub(service, tenant), method)(request, timeout=self.deadline_s)
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc) from None

    async def close(self) -> None:
        await self._stubs.close()
