"""Benchmark: ingest's durable front doors vs raw aiokafka produce (acks=all), same broker, same run.

- notifications/s: full-resource event notifications POSTed over HTTP to the receiver
  (uvicorn, loopback), C in flight. Each is authenticated, parsed, deduped on
  (subscription, eventNumber) and (resource, versionId) in PostgreSQL, published and
  acknowledged by the broker before the 200.
- MLLP messages/s: MDM^T02 notes over MLLP, C connections. Each is parsed, mapped, deduped
  on MSH-10, kept encrypted, written to the EHR sandbox (Patient + DocumentReference,
  conditional) and published (2 events) before the AA.
- raw: aiokafka send_and_wait with acks=all of records of the same size, C in flight.
The EHR sandbox runs in its own process (`vigil ehr serve`). Ratios are ingest / raw.

    python -m bench.ingest [N_NOTIFY] [N_MLLP] [C]
"""
from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import uuid

import httpx
import uvicorn
from aiokafka import AIOKafkaProducer
from hl7.mllp import open_hl7_connection

from services.core.config import Settings
from services.core.db import create_pool
from services.core.fhir import FhirClient
from services.core.logging import configure
from services.core.secrets import SecretSettings
from services.core.tenancy import Registry, Tenant
from services.core.tenantdb import provision_tenant_role
from services.core.topics import ensure_tenant_topics
from services.ehr.provision import AdminClient
from services.ingest.mllp.server import MllpServer
from services.ingest.receiver import auth
from services.ingest.receiver.app import ReceiverContext, create_app
from services.ingest.runtime import runtime
from services.ingest.store import schema

DEFAULT_NOTIFY = 2000
DEFAULT_MLLP = 300
DEFAULT_CONCURRENCY = 16
START_TIMEOUT_S = 30.0
FACILITY = "BENCHFAC"
RAW_RECORD_BYTES = 300  # about the size of one resource-changed event (JSON payload + ce_* headers)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _run(n: int, concurrency: int, work) -> float:
    queue = iter(range(n))

    async def worker(w: int) -> None:
        for i in queue:
            await work(i, w)
    started = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return n / (time.perf_counter() - started)


def notification(i: int, sub: str, number: int) -> dict:
    doc = {"resourceType": "DocumentReference", "id": f"doc-{i}", "status": "current",
           "meta": {"versionId": "1", "lastUpdated": "2026-01-01T00:00:00.000Z"},
           "subject": {"reference": f"Patient/p{i % 200}"},
           "content": [{"attachment": {"contentType": "text/plain", "data": "UGF0aWVudCBub3Rl"}}]}
    ref = f"http://ehr/fhir/t/DocumentReference/doc-{i}/_history/1"
    params = [{"name": "subscription", "valueReference": {"reference": f"http://ehr/fhir/t/Subscription/{sub}"}},
              {"name": "topic", "valueCanonical": "http://vigil.example/fhir/SubscriptionTopic/note-created"},
              {"name": "status", "valueCode": "active"}, {"name": "type", "valueCode": "event-notification"},
              {"name": "events-since-subscription-start", "valueString": str(number)},
              {"name": "notification-event", "part": [{"name": "event-number", "valueString": str(number)},
                                                      {"name": "focus", "valueReference": {"reference": ref}}]}]
    return {"resourceType": "Bundle", "type": "history",
            "entry": [{"resource": {"resourceType": "Parameters", "parameter": params}},
                      {"fullUrl": ref, "resource": doc}]}


def mdm(i: int) -> bytes:
    return ("MSH|^~\\&|APP|BENCHFAC|VIGIL|VIGIL|20260101120000+0000||MDM^T02^MDM_T02|B" + str(i) + "|P|2.5.1\r"
            f"PID|1||MRN{i % 200}^^^HOSP^MR||Doe^Jane||19700101|F\r"
            f"TXA|1|PN|TX|20260101115500+0000||20260101120000+0000||||||DOC-{i}|||||AU\r"
            "OBX|1|TX|note^Note||Patient reports grade 2 rash after pembrolizumab.||||||F\r").encode()


async def _start_ehr(settings: Settings):
    port = _free_port()
    secret = "bench-" + uuid.uuid4().hex
    env = {**os.environ, "VIGIL_EHR_ADMIN_SECRET": secret, "VIGIL_LOG_LEVEL": "warning"}
    proc = subprocess.Popen([sys.executable, "-m", "services.cli", "ehr", "serve", "--host", "127.0.0.1",
                             "--port", str(port)], env=env, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    async with httpx.AsyncClient() as http:
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.terminate()
                raise RuntimeError("the EHR server did not start")
            try:
                if (await http.get(f"{url}/healthz")).status_code == 200:
                    return proc, url, secret
            except httpx.HTTPError:
                await asyncio.sleep(0.2)


async def bench_ingest(settings: Settings, n_notify: int, n_mllp: int, concurrency: int) -> tuple[float, float, int]:
    tenant_id = "bench" + uuid.uuid4().hex[:8]
    secrets = SecretSettings.from_env()
    tenant = Tenant(id=tenant_id, hl7_facilities=(FACILITY,))
    await ensure_tenant_topics(settings, tenant)
    admin = await create_pool(settings, min_size=1, max_size=2)
    try:
        await schema.migrate(admin)
        async with admin.acquire() as conn:
            await provision_tenant_role(conn, tenant_id, secrets)
    finally:
        await admin.close()
    proc, url, secret = await _start_ehr(settings)
    try:
        async with AdminClient(url, secret) as ehr_admin:
            await ehr_admin.create_tenant(tenant_id)
            creds = await ehr_admin.new_client(tenant_id, "bench", ["system/*.cruds"])
        client = FhirClient(f"{url}/fhir/{tenant_id}", credentials=creds, max_connections=concurrency)
        await client.start()
        registry = Registry(settings.tenants_file, [tenant])
        async with runtime(settings, registry, secrets, migrate=False, clients={tenant_id: client}) as rt:
            port = _free_port()
            server = uvicorn.Server(uvicorn.Config(create_app(ReceiverContext(registry, secrets, rt.handler)),
                                                   host="127.0.0.1", port=port, log_level="warning",
                                                   access_log=False, lifespan="off"))
            task = asyncio.create_task(server.serve())
            while not server.started:
                await asyncio.sleep(0.02)
            headers = {"Content-Type": "application/fhir+json",
                       "Authorization": f"Bearer {auth.channel_token(secrets, tenant_id)}"}
            # One subscription per worker: a subscription's events are delivered in order (one at a
            # time), so parallelism comes from several subscriptions (topics x tenants), as in production.
            numbers = [0] * concurrency
            limits = httpx.Limits(max_connections=concurrency)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=60) as http:
                async def post(i: int, w: int) -> None:
                    numbers[w] += 1
                    body = json.dumps(notification(i, f"bench-{w}", numbers[w])).encode()
                    r = await http.post(f"/notify/{tenant_id}", content=body, headers=headers)
                    if r.status_code != 200:
                        raise RuntimeError(f"notification {i}: HTTP {r.status_code}")
                notify_rate = await _run(n_notify, concurrency, post)
            server.should_exit = True
            await task

            mllp = MllpServer(rt.pipeline, "127.0.0.1", 0)
            await mllp.start()
            conns = [await open_hl7_connection("127.0.0.1", mllp.port, encoding="utf-8") for _ in range(concurrency)]
            blocks = [mdm(i) for i in range(n_mllp)]

            async def send(i: int, w: int) -> None:
                reader, writer = conns[w]
                writer.writeblock(blocks[i])
                await writer.drain()
                ack = await reader.readblock()
                if b"MSA|AA|" not in ack:
                    raise RuntimeError(f"message {i}: not accepted")
            mllp_rate = await _run(n_mllp, concurrency, send)
            for _reader, writer in conns:
                writer.close()
            await mllp.stop()
        await client.close()
        return notify_rate, mllp_rate, RAW_RECORD_BYTES
    finally:
        proc.terminate()
        proc.wait(10)


async def bench_raw(settings: Settings, n: int, concurrency: int, size: int) -> float:
    tenant = Tenant(id="bench" + uuid.uuid4().hex[:8])
    await ensure_tenant_topics(settings, tenant)
    topic = tenant.topic("ehr-events")
    producer = AIOKafkaProducer(acks="all", enable_idempotence=False, linger_ms=2, **settings.kafka.client_kwargs())
    await producer.start()
    payload = b"x" * size
    try:
        async def send(i: int, _w: int) -> None:
            await producer.send_and_wait(topic, payload, key=f"p{i % 200}".encode())
        await send(0, 0)
        return await _run(n, concurrency, send)
    finally:
        await producer.stop()


async def main(n_notify: int, n_mllp: int, concurrency: int) -> None:
    configure("warning")
    settings = Settings.from_env()
    notify_rate, mllp_rate, size = await bench_ingest(settings, n_notify, n_mllp, concurrency)
    raw_rate = await bench_raw(settings, n_notify, concurrency, size)
    print(f"ingest vs raw aiokafka produce (acks=all), concurrency={concurrency}")
    print(f"  raw produce            {raw_rate:9.0f} records/s  (N={n_notify}, {size}-byte records)")
    print(f"  notifications accepted {notify_rate:9.0f} /s        (N={n_notify})   ratio {notify_rate / raw_rate:.3f}")
    print(f"  MLLP messages AA       {mllp_rate:9.0f} /s        (N={n_mllp}, 2 EHR writes + 2 events each)   "
          f"ratio {mllp_rate / raw_rate:.3f}")


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:4]]
    asyncio.run(main(args[0] if args else DEFAULT_NOTIFY, args[1] if len(args) > 1 else DEFAULT_MLLP,
                     args[2] if len(args) > 2 else DEFAULT_CONCURRENCY))
