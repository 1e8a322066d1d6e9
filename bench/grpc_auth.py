"""Benchmark: the cost of Vigil's gRPC plumbing (bearer credential verification, tenant check,
error mapping) vs a bare grpc.aio server running the same handler, in the same run.

Both servers answer Inference.Extract with an empty response on loopback; N calls, C in flight,
split into ROUNDS alternating rounds (raw, vigil, raw, ...) and the median rate of each is
reported, so load from other processes on the machine hits both sides alike.
Vigil: ``services.core.grpc.server.start_server`` + ``connect`` (HS256 token minted once per tenant and
verified on every call). Raw: ``grpc.aio.server()`` with no interceptor, an insecure channel,
no metadata. Prints both rates and the ratio Vigil / raw.

    python -m bench.grpc_auth [N] [C]
"""
from __future__ import annotations

import asyncio
import statistics
import sys
import time

import grpc

from services.core.grpc.auth import current_caller
from services.core.grpc.client import connect
from services.core.grpc.server import start_server
from services.core.grpc.settings import GrpcSettings
from services.core.tokens import TokenSource
from vigil.v1 import inference_pb2, inference_pb2_grpc

DEFAULT_N = 5000
DEFAULT_CONCURRENCY = 16
ROUNDS = 7
TENANT = "bench-tenant"


class Plain(inference_pb2_grpc.InferenceServicer):
    async def Extract(self, request, context):
        return inference_pb2.ExtractResponse(document_id=request.document_id)


class Authenticated(inference_pb2_grpc.InferenceServicer):
    async def Extract(self, request, context):
        return inference_pb2.ExtractResponse(document_id=request.document_id, engine=current_caller().tenant)


async def drive(stub, n: int, concurrency: int) -> float:
    request = inference_pb2.ExtractRequest(document_id="d", version="1", text="x" * 2000)
    queue = iter(range(n))

    async def worker() -> None:
        for _ in queue:
            await stub.Extract(request)

    await asyncio.gather(*(worker() for _ in range(min(concurrency, 2))))   # warm-up connections
    queue = iter(range(n))
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return n / (time.perf_counter() - started)


async def main(n: int, concurrency: int) -> None:
    settings = GrpcSettings.from_env({"VIGIL_GRPC_TOKEN_KEY": "b" * 40})
    name = inference_pb2.DESCRIPTOR.services_by_name["Inference"].full_name
    vigil = await start_server([(inference_pb2_grpc.add_InferenceServicer_to_server, Authenticated(), name)],
                               settings, "127.0.0.1:0")
    raw = grpc.aio.server()
    inference_pb2_grpc.add_InferenceServicer_to_server(Plain(), raw)
    raw_port = raw.add_insecure_port("127.0.0.1:0")
    await raw.start()
    tokens = TokenSource(settings.tokens, sub="bench")
    raw_rates, vigil_rates = [], []
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{raw_port}") as raw_channel, \
                connect(settings, "inference", tokens, TENANT, target=f"127.0.0.1:{vigil.port}") as vigil_channel:
            raw_stub = inference_pb2_grpc.InferenceStub(raw_channel)
            vigil_stub = inference_pb2_grpc.InferenceStub(vigil_channel)
            for _ in range(ROUNDS):
                raw_rates.append(await drive(raw_stub, n // ROUNDS, concurrency))
                vigil_rates.append(await drive(vigil_stub, n // ROUNDS, concurrency))
    finally:
        await vigil.stop(None)
        await raw.stop(None)
    raw_rate, vigil_rate = statistics.median(raw_rates), statistics.median(vigil_rates)
    print(f"raw grpc.aio:        {raw_rate:9.0f} calls/s")
    print(f"vigil (auth+tenant): {vigil_rate:9.0f} calls/s")
    print(f"ratio vigil/raw:     {vigil_rate / raw_rate:9.2f}  (N={n}, C={concurrency}, median of {ROUNDS} rounds)")


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]]
    asyncio.run(main(*(args + [DEFAULT_N, DEFAULT_CONCURRENCY][len(args):])))
