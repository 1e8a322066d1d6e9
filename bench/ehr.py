"""Benchmark: the EHR sandbox's HTTP API vs raw asyncpg on the same PostgreSQL, same run.

HTTP: N creates (POST Observation, SMART-authenticated, validated, stored with history) and
then N reads (GET by id) through services.core.fhir, C requests in flight. The server runs
in its own process (`vigil ehr serve`) on a free port.
Raw: N single-row INSERTs of the same JSON into a plain (id, jsonb) table and N primary-key
SELECTs, C connections in flight. Prints both rates and the ratio HTTP / raw.

    python -m bench.ehr [N] [C]
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import uuid

import asyncpg
import httpx
import psutil

from services.core.config import Settings
from services.core.fhir import FhirClient
from services.ehr.provision import AdminClient

DEFAULT_N = 2000
DEFAULT_CONCURRENCY = 16
START_TIMEOUT_S = 30.0


def observation(i: int) -> dict:
    return {"resourceType": "Observation", "status": "final",
            "identifier": [{"system": "urn:bench", "value": f"obs-{i}"}],
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                      "code": "vital-signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
            "subject": {"reference": f"Patient/p{i % 50}"}, "effectiveDateTime": "2024-05-01T10:00:00Z",
            "valueQuantity": {"value": 60 + i % 40, "unit": "/min", "system": "http://unitsofmeasure.org",
                              "code": "/min"}}


async def _run(n: int, concurrency: int, work) -> float:
    queue = iter(range(n))

    async def worker() -> None:
        for i in queue:
            await work(i)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return n / (time.perf_counter() - started)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _wait_up(url: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError("the EHR server exited during start-up")
            try:
                if (await http.get(f"{url}/healthz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError("the EHR server did not start")


@contextlib.asynccontextmanager
async def sandbox_client(client_id: str, scopes: list[str], concurrency: int):
    """An EHR sandbox in its own process with a fresh tenant; yields (started FhirClient, process)."""
    port = _free_port()
    secret = "bench-" + uuid.uuid4().hex
    env = {**os.environ, "VIGIL_EHR_ADMIN_SECRET": secret, "VIGIL_LOG_LEVEL": "warning"}
    proc = subprocess.Popen([sys.executable, "-m", "services.cli", "ehr", "serve", "--host", "127.0.0.1",
                             "--port", str(port)], env=env, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        await _wait_up(url, proc)
        tenant = "bench" + uuid.uuid4().hex[:8]
        async with AdminClient(url, secret) as admin:
            await admin.create_tenant(tenant)
            creds = await admin.new_client(tenant, client_id, scopes)
        async with FhirClient(f"{url}/fhir/{tenant}", credentials=creds, max_connections=concurrency) as client:
            yield client, proc
    finally:
        proc.terminate()
        proc.wait(10)


async def bench_http(settings: Settings, n: int, concurrency: int) -> tuple[float, float]:
    async with sandbox_client("bench", ["system/Observation.crs"], concurrency) as (client, proc):
        ids: list[str] = [""] * n

        async def create(i: int) -> None:
            ids[i] = (await client.create(observation(i), prefer="minimal")).id

        async def read(i: int) -> None:
            await client.read("Observation", ids[i])

        await create(0)  # warm up: token, connections
        server = psutil.Process(proc.pid)
        cpu0 = sum(server.cpu_times()[:2])
        creates = await _run(n, concurrency, create)
        cpu1 = sum(server.cpu_times()[:2])
        reads = await _run(n, concurrency, read)
        cpu2 = sum(server.cpu_times()[:2])
    print(f"  server CPU per request: create {1000 * (cpu1 - cpu0) / n:.2f} ms, read {1000 * (cpu2 - cpu1) / n:.2f} ms"
          f"  (host load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    return creates, reads


async def bench_raw(settings: Settings, n: int, concurrency: int) -> tuple[float, float]:
    table = f"ehr_bench_raw_{uuid.uuid4().hex[:8]}"
    pool = await asyncpg.create_pool(settings.postgres_dsn, min_size=concurrency, max_size=concurrency)
    try:
        await pool.execute(f"CREATE TABLE {table} (id text PRIMARY KEY, content jsonb NOT NULL)")
        ids = [str(uuid.uuid4()) for _ in range(n)]

        async def insert(i: int) -> None:
            await pool.execute(f"INSERT INTO {table} (id, content) VALUES ($1, $2::jsonb)", ids[i],
                               json.dumps(observation(i)))

        async def select(i: int) -> None:
            await pool.fetchval(f"SELECT content FROM {table} WHERE id = $1", ids[i])

        inserts = await _run(n, concurrency, insert)
        selects = await _run(n, concurrency, select)
        return inserts, selects
    finally:
        await pool.execute(f"DROP TABLE IF EXISTS {table}")  # this run's own table
        await pool.close()


async def main(n: int, concurrency: int) -> None:
    settings = Settings.from_env()
    http_creates, http_reads = await bench_http(settings, n, concurrency)
    raw_inserts, raw_selects = await bench_raw(settings, n, concurrency)
    print(f"EHR sandbox vs raw asyncpg, N={n}, concurrency={concurrency}")
    print(f"  creates/s  HTTP {http_creates:8.0f}   raw INSERT {raw_inserts:8.0f}   ratio {http_creates / raw_inserts:.3f}")
    print(f"  reads/s    HTTP {http_reads:8.0f}   raw SELECT {raw_selects:8.0f}   ratio {http_reads / raw_selects:.3f}")


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]]
    asyncio.run(main(*(args + [DEFAULT_N, DEFAULT_CONCURRENCY][len(args):])))
