"""The embedded stack: real round-trips through the broker, Redis and PostgreSQL over TCP."""
from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
import uuid

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from services.core import devstack, kv, probes
from services.core.config import Settings
from services.core.db import create_pool, ensure_schema
from services.core.topics import ensure_tenant_topics


async def test_produce_consume_round_trip(stack, tenant):
    created = await ensure_tenant_topics(stack, tenant)
    assert tenant.topic("ehr-events") in created
    assert await ensure_tenant_topics(stack, tenant) == []  # idempotent
    topic = tenant.topic("ehr-events")
    producer = AIOKafkaProducer(acks="all", **stack.kafka.client_kwargs())
    await producer.start()
    try:
        payloads = [f"event-{i}".encode() for i in range(10)]
        for p in payloads:
            await producer.send_and_wait(topic, p, key=b"patient-1")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(topic, group_id=f"g-{uuid.uuid4().hex[:6]}", auto_offset_reset="earliest",
                                enable_auto_commit=False, **stack.kafka.client_kwargs())
    await consumer.start()
    got = []
    try:
        async with asyncio.timeout(30):
            while len(got) < 10:
                for msgs in (await consumer.getmany(timeout_ms=500)).values():
                    got.extend(m.value for m in msgs)
    finally:
        await consumer.stop()
    assert got == payloads  # same key -> same partition -> order kept


async def test_redis_command(stack, tenant_id):
    client = kv.admin_client(stack)
    try:
        key = kv.key(tenant_id, "probe")
        await client.set(key, b"v", ex=30)
        assert await client.get(key) == b"v"
        assert key.startswith(f"vigil:{tenant_id}:")
    finally:
        await client.aclose()


async def test_postgres_query_and_schema_steps(stack, tenant_id):
    pool = await create_pool(stack)
    try:
        assert await pool.fetchval("SELECT 40 + 2") == 42
        module = f"test_{tenant_id}"
        steps = [f"CREATE TABLE {module} (id int primary key)", f"ALTER TABLE {module} ADD COLUMN v text"]
        assert await ensure_schema(pool, module, steps) == 2
        assert await ensure_schema(pool, module, steps) == 0
        results = await asyncio.gather(*(ensure_schema(pool, module, steps + [f"CREATE INDEX ON {module}(v)"])
                                         for _ in range(4)))
        assert sorted(results) == [0, 0, 0, 1]  # concurrent start-ups apply a step once
        with pytest.raises(RuntimeError, match="changed"):
            await ensure_schema(pool, module, ["CREATE TABLE other (x int)"])
        await pool.execute(f"DROP TABLE {module}")
    finally:
        await pool.close()


def test_up_twice_is_safe_and_status_json(stack):
    rows = devstack.up(stack, only=["kafka", "redis", "postgres"])
    assert {r.component: r.state for r in rows if r.component in ("kafka", "redis", "postgres")} == \
        {"kafka": "up", "redis": "up", "postgres": "up"}
    out = subprocess.run([sys.executable, "-m", "services.cli", "dev", "status", "--json"], capture_output=True,
                         text=True, env={"VIGIL_STATE_DIR": str(stack.state_dir), "VIGIL_KAFKA_BOOTSTRAP":
                                         stack.kafka.bootstrap, "VIGIL_REDIS_URL": stack.redis_url,
                                         "VIGIL_POSTGRES_DSN": stack.postgres_dsn, "PATH": "/usr/bin:/bin"},
                         timeout=60)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["kafka"]["state"] == "up" and data["kafka"]["address"] == f"{stack.kafka.host}:{stack.kafka.port}"


def test_foreign_process_on_port_is_a_clear_error(tmp_path):
    """Something that is not Kafka on the Kafka port: an immediate error, not a hang."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    stop = threading.Event()

    def answer_garbage():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            conn.sendall(b"SSH-2.0-not-kafka\r\n")
            conn.close()

    thread = threading.Thread(target=answer_garbage, daemon=True)
    thread.start()
    try:
        assert probes.probe_kafka("127.0.0.1", port) == "foreign"
        settings = Settings.from_env({"VIGIL_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}", "VIGIL_STATE_DIR": str(tmp_path)})
        with pytest.raises(devstack.DevStackError, match="does not speak Kafka"):
            devstack.up(settings, only=["kafka"])
    finally:
        stop.set()
        thread.join()
        server.close()


def test_embedded_components_start_and_stop_cleanly(tmp_path):
    """On free ports, `up` starts our own broker, Redis and PostgreSQL; `down` leaves nothing behind."""
    ports = []
    for _ in range(3):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        ports.append(s.getsockname()[1])
        s.close()
    state = tmp_path / "state"
    settings = Settings.from_env({"VIGIL_STATE_DIR": str(state), "VIGIL_KAFKA_BOOTSTRAP": f"127.0.0.1:{ports[0]}",
                                  "VIGIL_REDIS_URL": f"redis://127.0.0.1:{ports[1]}/0",
                                  "VIGIL_POSTGRES_DSN": f"postgresql://postgres@127.0.0.1:{ports[2]}/vigil"})
    state.mkdir()
    state.chmod(0o755)
    tmp_path.chmod(0o755)
    try:
        rows = devstack.up(settings, only=["kafka", "redis", "postgres"])
        by_name = {r.component: r for r in rows}
        for name in ("kafka", "redis", "postgres"):
            assert by_name[name].state == "up" and by_name[name].owner == "vigil", by_name[name]
        again = {r.component: r.pid for r in devstack.up(settings, only=["kafka", "redis", "postgres"])}
        assert again == {r.component: r.pid for r in rows}  # second up reuses, starts nothing

        async def query():
            conn = await asyncpg.connect(settings.postgres_dsn)
            try:
                return await conn.fetchval("SELECT current_database()")
            finally:
                await conn.close()

        assert asyncio.run(query()) == "vigil"
        pids = [r.pid for r in rows if r.pid]
    finally:
        devstack.down(settings)
    assert all(r.state == "down" for r in devstack.status(settings) if r.component in ("kafka", "redis", "postgres"))
    assert pids and not any(devstack._alive(pid) for pid in pids)
