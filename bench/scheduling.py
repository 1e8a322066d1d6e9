"""Benchmark: a verified booking through the tools service vs a raw ``Appointment/$book``, same run.

Verified: ``Book`` over loopback gRPC (service credential), the action ledger (two PostgreSQL units
of work under tenant RLS), the slot-hold check in Redis (tenant ACL user), reconciliation search,
``$book``, and the read-back of the Appointment and the Slot. Raw: ``FhirClient.book`` on the same
sandbox (no ledger, no read-back). Each books N distinct free slots, C in flight. Prints both rates
and the ratio verified / raw (the price of the guarantee).

    python -m bench.scheduling [N] [C]
"""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

from bench.ehr import _free_port, _run, _wait_up
from services.core import kv
from services.core.agentclients import AgentClients
from services.core.config import Settings
from services.core.db import create_pool
from services.core.fhir import FhirClient
from services.core.grpc.settings import GrpcSettings
from services.core.logging import configure
from services.core.secrets import SecretSettings
from services.core.tenancy import Registry, Tenant
from services.core.tenantdb import provision_tenant_role, quote_ident, tenant_role
from services.ehr.provision import AdminClient
from services.scheduling.toolbox import Toolbox
from services.tools import app as tools_app

DEFAULT_N = 200
DEFAULT_CONCURRENCY = 8


def slots_bundle(schedule: str, count: int) -> dict:
    base = datetime(2031, 1, 6, 8, 0, tzinfo=timezone.utc)
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "POST", "url": "Slot"}, "resource": {
            "resourceType": "Slot", "schedule": {"reference": f"Schedule/{schedule}"}, "status": "free",
            "start": (base + timedelta(minutes=30 * i)).isoformat(),
            "end": (base + timedelta(minutes=30 * i + 30)).isoformat()}} for i in range(count)]}


async def main(n: int, concurrency: int) -> None:
    configure("warning")
    settings, secrets = Settings.from_env(), SecretSettings.from_env()
    tenant = "bench" + uuid.uuid4().hex[:8]
    port, admin_secret = _free_port(), "bench-" + uuid.uuid4().hex
    proc = subprocess.Popen([sys.executable, "-m", "services.cli", "ehr", "serve", "--host", "127.0.0.1",
                             "--port", str(port)], env={**os.environ, "VIGIL_EHR_ADMIN_SECRET": admin_secret,
                                                        "VIGIL_LOG_LEVEL": "warning"}, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    admin_pool = await create_pool(settings, min_size=1, max_size=1)
    workdir = Path(tempfile.mkdtemp(prefix="bench-scheduling-"))
    try:
        await _wait_up(url, proc)
        async with admin_pool.acquire() as conn:
            await provision_tenant_role(conn, tenant, secrets)
        await kv.provision_tenant_user(settings, tenant, secrets)
        async with AdminClient(url, admin_secret) as admin:
            await admin.create_tenant(tenant)
            creds = await admin.new_client(tenant, "vigil-tools", ["system/*.cruds"])
        (workdir / "tools.pem").write_text(creds.private_key_pem)
        registry = Registry(workdir / "tenants.toml", [Tenant(id=tenant, ehr_base_url=f"{url}/fhir/{tenant}", settings={
            "fhir_client_id": "vigil-tools", "fhir_private_key_file": str(workdir / "tools.pem"),
            "fhir_key_id": creds.kid, "fhir_scope": "system/*.cruds"})])
        registry.save()
        grpc_settings = GrpcSettings.from_env({"VIGIL_GRPC_TOKEN_KEY": "b" * 48})
        tools = await tools_app.start(settings.with_overrides(tenants_file=registry.path), grpc_settings,
                                      address="127.0.0.1:0", secrets=secrets)
        clients = AgentClients(grpc_settings, sub="bench", targets={"tools": f"127.0.0.1:{tools.port}"})
        try:
            verified_rate, raw_rate, elapsed = await measure(n, concurrency, url, tenant, creds, clients)
        finally:
            await clients.close()
            await tools.stop()
        print(f"Verified booking (tools + ledger + read-back) vs raw $book, N={n}, concurrency={concurrency}, "
              f"{elapsed:.1f} s")
        print(f"  bookings/s  verified {verified_rate:8.1f}   raw {raw_rate:8.1f}   ratio {verified_rate / raw_rate:.3f}")
    finally:
        proc.terminate()
        proc.wait(10)
        await kv.remove_tenant_user(settings, tenant)
        async with admin_pool.acquire() as conn:
            await conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
                               tenant_role(tenant))
            await conn.execute(f"DROP ROLE IF EXISTS {quote_ident(tenant_role(tenant))}")
        await admin_pool.close()


async def measure(n: int, concurrency: int, url: str, tenant: str, creds, clients) -> tuple[float, float, float]:
    async with FhirClient(f"{url}/fhir/{tenant}", credentials=creds, max_connections=concurrency) as fhir:
        patient = (await fhir.create({"resourceType": "Patient"})).id
        doctor = (await fhir.create({"resourceType": "Practitioner"})).id
        schedule = (await fhir.create({"resourceType": "Schedule", "active": True,
                                       "actor": [{"reference": f"Practitioner/{doctor}"}]})).id
        response = await fhir.transaction(slots_bundle(schedule, 2 * n + 2))
        slot_ids = [e["response"]["location"].split("/")[1] for e in response["entry"]]
        toolbox = Toolbox(clients, tenant)
        verified_slots, raw_slots = slot_ids[: n + 1], slot_ids[n + 1:]

        async def verified(i: int) -> None:
            result = await toolbox.book(f"bench-{i}", verified_slots[i], patient, "")
            assert result.status == "verified", result.status

        async def raw(i: int) -> None:
            await fhir.book({"resourceType": "Appointment", "status": "booked",
                             "slot": [{"reference": f"Slot/{raw_slots[i]}"}],
                             "participant": [{"actor": {"reference": f"Patient/{patient}"}, "status": "accepted"}]})

        await verified(n)                     # warm up: token, channels, pools
        await raw(n)
        started = time.perf_counter()
        verified_rate = await _run(n, concurrency, verified)
        raw_rate = await _run(n, concurrency, raw)
        elapsed = time.perf_counter() - started
    return verified_rate, raw_rate, elapsed


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]]
    asyncio.run(main(*(args + [DEFAULT_N, DEFAULT_CONCURRENCY][len(args):])))
