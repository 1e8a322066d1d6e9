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
        self._channels: dict[tuple[str, str], grpc.aio.Channel] = {}
        self._stubs: dict[tuple[str, str], object] = {}

    def stub(self, service: str, tenant: str):
        key = (service, tenant)
        if key not in self._stubs:
            channel = connect(self.settings, service, self.tokens, tenant, target=self.targets.get(service))
            self._channels[key] = channel
            self._stubs[key] = _stub_class(service)(channel)
        return self._stubs[key]

    async def call(self, service: str, tenant: str, method: str, request):
        try:
            return await getattr(self.stub(service, tenant), method)(request, timeout=self.deadline_s)
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc) from None

    async def close(self) -> None:
        channels, self._channels, self._stubs = list(self._channels.values()), {}, {}
        for channel in channels:
            await channel.close()
