"""Benchmark: the MLLP listener (AA on durable receipt) vs a raw produce loop, same broker, same run.

- MLLP: N MDM^T02 notes sent one after the other on ONE connection, each waiting for its ACK
  (how an interface engine sends a feed: in order, one outstanding message), by a plain blocking
  socket client in its own process (the interface engine is not Vigil's process). Each message is
  parsed, routed, sealed with the tenant data key and produced to ``vigil.<tenant>.hl7-inbound``
  with acks=all before its AA. Neither the EHR nor PostgreSQL is in that path.
- raw: the same message bytes produced one after the other with aiokafka ``send_and_wait``
  (acks=all) to a topic of the same partition count: the floor of a durable hand-off.

The two loops take turns for several rounds; the ratio is of the median rates.

    python -m bench.hl7 [N] [ROUNDS]        (make bench-hl7)
    python -m bench.hl7 --client PORT N RUN  (the MLLP client alone; prints its rate)
"""
from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
import uuid

from aiokafka import AIOKafkaProducer
from hl7.mllp import open_hl7_connection

from services.core.config import Settings
from services.core.db import create_pool
from services.core.logging import configure
from services.core.secrets import SecretSettings
from services.core.tenancy import Registry, Tenant
from services.core.tenantdb import provision_tenant_role
from services.core.topics import ensure_tenant_topics
from services.ingest.mllp.server import MllpServer
from services.ingest.runtime import migrate_all, runtime

DEFAULT_N = 2000
DEFAULT_ROUNDS = 3
FACILITY = "BENCHFAC"
GOAL_RATE = 300.0
GOAL_RATIO = 0.5


def mdm(run: str, i: int) -> bytes:
    return (f"MSH|^~\\&|APP|{FACILITY}|VIGIL|VIGIL|20260101120000+0000||MDM^T02^MDM_T02|{run}-{i}|P|2.5.1\r"
            f"PID|1||MRN{i % 200}^^^HOSP^MR||Doe^Jane||19700101|F\r"
            f"TXA|1|PN|TX|20260101115500+0000||20260101120000+0000||||||DOC-{run}-{i}|||||AU\r"
            "OBX|1|TX|11506-3^Progress note^LN||Oncology clinic. Cycle 4 of pembrolizumab. Assessment: grade 2 "
            "immune-mediated colitis, 6 stools a day. Plan: hold pembrolizumab, start prednisone.||||||F\r").encode()


async def mllp_round(port: int, blocks: list[bytes]) -> float:
    reader, writer = await open_hl7_connection("127.0.0.1", port, encoding="utf-8")
    try:
        started = time.perf_counter()
        for i, block in enumerate(blocks):
            writer.writeblock(block)
            await writer.drain()
            ack = await reader.readblock()
            if b"MSA|AA|" not in ack:
                raise RuntimeError(f"message {i}: not accepted")
        return len(blocks) / (time.perf_counter() - started)
    finally:
        writer.close()
        await writer.wait_closed()


async def client_round(port: int, n: int, run: str) -> float:
    """One MLLP round sent by a client process of its own."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bench.hl7", "--client", str(port), str(n), run,
                                                stdout=subprocess.PIPE, env=dict(os.environ))
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"the MLLP client failed ({proc.returncode})")
    return float(out.decode().strip().splitlines()[-1])


async def raw_round(producer: AIOKafkaProducer, topic: str, blocks: list[bytes]) -> float:
    started = time.perf_counter()
    for i, block in enumerate(blocks):
        await producer.send_and_wait(topic, block, key=f"MRN{i % 200}".encode())
    return len(blocks) / (time.perf_counter() - started)


async def main(n: int, rounds: int) -> int:
    configure("warning")
    settings = Settings.from_env()
    secrets = SecretSettings.from_env()
    tenant = Tenant(id="bench" + uuid.uuid4().hex[:8], hl7_facilities=(FACILITY,))
    raw_tenant = Tenant(id="bench" + uuid.uuid4().hex[:8])
    await ensure_tenant_topics(settings, tenant)
    await ensure_tenant_topics(settings, raw_tenant)
    admin = await create_pool(settings, min_size=1, max_size=2)
    try:
        await migrate_all(admin)
        async with admin.acquire() as conn:
            await provision_tenant_role(conn, tenant.id, secrets)
    finally:
        await admin.close()
    producer = AIOKafkaProducer(acks="all", enable_idempotence=False, linger_ms=0, **settings.kafka.client_kwargs())
    await producer.start()
    mllp_rates, raw_rates = [], []
    try:
        async with runtime(settings, Registry(settings.tenants_file, [tenant]), secrets, migrate=False) as rt:
            server = MllpServer(rt.pipeline, "127.0.0.1", 0)
            await server.start()
            await client_round(server.port, 50, "warm")
            await raw_round(producer, raw_tenant.topic("hl7-inbound"), [mdm("warm", i) for i in range(50)])
            for r in range(rounds):
                blocks = [mdm(f"r{r}", i) for i in range(n)]
                mllp_rates.append(await client_round(server.port, n, f"r{r}"))
                raw_rates.append(await raw_round(producer, raw_tenant.topic("hl7-inbound"), blocks))
                print(f"  round {r + 1}: MLLP {mllp_rates[-1]:7.0f} msg/s   raw {raw_rates[-1]:7.0f} msg/s   "
                      f"ratio {mllp_rates[-1] / raw_rates[-1]:.2f}")
            await server.stop()
    finally:
        await producer.stop()
    mllp, raw = statistics.median(mllp_rates), statistics.median(raw_rates)
    ratio = mllp / raw
    print(f"MLLP on one connection, each message waiting for its ACK (N={n}, {rounds} rounds, medians):")
    print(f"  MLLP AA on durable receipt {mllp:7.0f} messages/s   (goal >= {GOAL_RATE:.0f})")
    print(f"  raw produce acks=all       {raw:7.0f} messages/s")
    print(f"  ratio                      {ratio:7.2f}              (goal >= {GOAL_RATIO})")
    return 0


def socket_round(port: int, blocks: list[bytes]) -> float:
    """The client side as an interface engine runs it: a plain blocking socket, one message out,
    read up to the end of block (``<FS><CR>``), check AA, next."""
    import socket

    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        started = time.perf_counter()
        for i, block in enumerate(blocks):
            sock.sendall(b"\x0b" + block + b"\x1c\r")
            ack = b""
            while not ack.endswith(b"\x1c\r"):
                chunk = sock.recv(4096)
                if not chunk:
                    raise RuntimeError(f"message {i}: connection closed")
                ack += chunk
            if b"MSA|AA|" not in ack:
                raise RuntimeError(f"message {i}: not accepted")
        return len(blocks) / (time.perf_counter() - started)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--client"]:
        port, count, run = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
        print(f"{socket_round(port, [mdm(run, i) for i in range(count)]):.1f}")
        sys.exit(0)
    args = [int(a) for a in sys.argv[1:3]]
    sys.exit(asyncio.run(main(args[0] if args else DEFAULT_N, args[1] if len(args) > 1 else DEFAULT_ROUNDS)))
