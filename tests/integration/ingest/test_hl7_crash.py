"""SIGKILL the MLLP listener and the hl7 stage mid-feed (both as their own processes): every message
that got AA is processed exactly once after the restart; the ones that got no ACK are resent by the
client (as an interface engine does) and processed once too."""
from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

from hl7.mllp import open_hl7_connection

from services.core.events import decode
from services.core.tenancy import Registry, Tenant
from services.ingest.hl7stage import labs
from services.ingest.hl7.parse import parse
from services.ingest.store import hl7_log
from tests.integration.ingest.conftest import read_topic

REPO = Path(__file__).resolve().parents[3]
MESSAGES = 240
KILL_AFTER = 80
FACILITY = "CRASHLAB"


def oru(i: int) -> bytes:
    return (f"MSH|^~\\&|LIS|{FACILITY}|VIGIL|VIGIL|20261120101500||ORU^R01^ORU_R01|L{i:05d}|P|2.5.1\r"
            f"PID|1||MRN{i % 17:04d}^^^LAB^MR||Doe^Jane||19600101|F\r"
            f"OBR|1|||718-7^Hemoglobin^LN|||20261120100000\r"
            f"OBX|1|NM|718-7^Hemoglobin^LN||{10 + i % 5}.{i % 10}|g/dL|12-16|L|||F\r"
            f"OBX|2|NM|4544-3^Hematocrit^LN||{30 + i % 9}|%|36-46|L|||F\r").encode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Procs:
    def __init__(self, stack, registry_path: Path, mllp_port: int):
        self.env = dict(os.environ, VIGIL_KAFKA_BOOTSTRAP=stack.kafka.bootstrap, VIGIL_REDIS_URL=stack.redis_url,
                        VIGIL_POSTGRES_DSN=stack.postgres_dsn, VIGIL_TENANTS_FILE=str(registry_path),
                        VIGIL_ENV="test", VIGIL_LOG_LEVEL="warning", VIGIL_INGEST_MLLP_PORT=str(mllp_port),
                        VIGIL_INGEST_HTTP_PORT=str(free_port()), VIGIL_INGEST_WATCHDOG="false",
                        VIGIL_METRICS_PORT="0")
        self.port = mllp_port
        self.listener = self.stage = None

    async def start(self) -> None:
        self.listener = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.ingest.app", cwd=str(REPO), env=self.env)
        self.stage = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.ingest.hl7stage.app", cwd=str(REPO), env=self.env)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                return
            except OSError:
                if loop.time() > deadline or self.listener.returncode is not None:
                    raise RuntimeError("the listener did not start")
                await asyncio.sleep(0.1)

    async def kill(self) -> None:
        for proc in (self.listener, self.stage):
            proc.send_signal(signal.SIGKILL)
            await proc.wait()

    async def stop(self) -> None:
        for proc in (self.listener, self.stage):
            if proc is not None and proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), 30)
                except asyncio.TimeoutError:
                    proc.kill()


async def feed(port: int, start: int, stop_at: int, acked: set[int], kill=None) -> int:
    """Send messages start.. in order, each waiting for its ACK; returns the first one not acknowledged."""
    reader, writer = await open_hl7_connection("127.0.0.1", port, encoding="utf-8")
    i = start
    try:
        while i < stop_at:
            if kill is not None and i == KILL_AFTER:
                writer.writeblock(oru(i))
                await writer.drain()
                await kill()  # mid-message: this one may or may not have been stored, and gets no ACK
                return i
            writer.writeblock(oru(i))
            await writer.drain()
            ack = parse(await asyncio.wait_for(reader.readblock(), 20))
            assert ack.get("MSA", 1) == "AA" and ack.get("MSA", 2) == f"L{i:05d}"
            acked.add(i)
            i += 1
        return i
    finally:
        writer.close()


async def test_sigkill_listener_and_stage_mid_feed_processes_every_message_once(ingest, tmp_path):
    tenant = Tenant(id=ingest.tenant.id, partitions=4, mode="active", hl7_facilities=(FACILITY,))
    path = tmp_path / "tenants.toml"
    Registry(path, [tenant]).save()
    procs = Procs(ingest.settings, path, free_port())
    await procs.start()
    acked: set[int] = set()
    try:
        resume = await feed(procs.port, 0, MESSAGES, acked, kill=procs.kill)
        assert resume == KILL_AFTER and len(acked) == KILL_AFTER
        await procs.start()
        assert await feed(procs.port, resume, MESSAGES, acked) == MESSAGES  # the unacknowledged one is resent
        records = await read_topic(ingest.settings, ingest.topic(labs.LAB_RESULTS), 2 * MESSAGES, timeout=90,
                                   settle=2)
    finally:
        await procs.stop()
    events = [decode(r.key, r.value, r.headers) for r in records]
    by_result: dict = {}
    for e in events:
        by_result.setdefault((e.data["message"]["controlId"], e.data["index"]), set()).add(e.id)
    # Every message's two results, each with exactly one event id (a record produced twice around the
    # kill carries the same id: consumers see it once).
    assert set(by_result) == {(f"L{i:05d}", n) for i in range(MESSAGES) for n in (1, 2)}
    assert all(len(ids) == 1 for ids in by_result.values())
    async with ingest.pools.tx(ingest.tenant.id, readonly=True) as conn:
        received = await hl7_log.received(conn, ingest.tenant.id, limit=10 * MESSAGES)
    assert sorted(r["control_id"] for r in received) == [f"L{i:05d}" for i in range(MESSAGES)]
