"""A client of the control service carrying one operator (or platform-admin) credential.

Used by the `vigil dlq` CLI and the web console; errors come back as ``services.core.errors``
(``error_from_rpc``), so callers map them to exit codes or HTTP statuses in one place each.

    async with ControlClient(grpc_settings, token) as cc:
        page = await cc.call("ListDeadLetters", pb.ListDeadLettersRequest(...))
        async for step in cc.stream("Replay", pb.ReplayRequest(...)):
            ...
"""
from __future__ import annotations

import grpc

from services.core.grpc.settings import GrpcSettings
from services.core.grpc.status import error_from_rpc
from vigil.v1 import control_pb2_grpc

CALL_TIMEOUT_S = 30.0
#: A replay at the default 50/s of 10 000 entries takes ~200 s; the stream may run this long.
STREAM_TIMEOUT_S = 3600.0


class ControlClient:
    def __init__(self, settings: GrpcSettings, token: str, target: str | None = None):
        self.settings, self._token = settings, token
        self.target = target or settings.address("control")
        self._channel: grpc.aio.Channel | None = None
        self.stub: control_pb2_grpc.ControlStub | None = None

    async def __aenter__(self) -> "ControlClient":
        credentials = self.settings.channel_credentials()
        if credentials is None:
            self._channel = grpc.aio.insecure_channel(self.target)
        else:
            options = [("grpc.ssl_target_name_override", self.settings.server_name)] if self.settings.server_name \
                else []
            self._channel = grpc.aio.secure_channel(self.target, credentials, options=options)
        self.stub = control_pb2_grpc.ControlStub(self._channel)
        return self

    async def __aexit__(self, *exc) -> None:
        if self._channel is not None:
            await self._channel.close()

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self._token}"),)

    async def call(self, method: str, request, timeout: float = CALL_TIMEOUT_S):
        try:
            return await getattr(self.stub, method)(request, metadata=self.metadata, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc) from None

    async def stream(self, method: str, request, timeout: float = STREAM_TIMEOUT_S):
        call = getattr(self.stub, method)(request, metadata=self.metadata, timeout=timeout)
        try:
            async for message in call:
                yield message
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc) from None
        finally:
            call.cancel()
