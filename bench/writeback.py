"""Benchmark: writeback's per-note cost - its own CPU and its EHR round trips - against the raw
transaction it sends, in the same run.

Against the EHR sandbox in its own process (`vigil ehr serve`, SMART-authenticated) and the shared
PostgreSQL (a tenant role of its own, removed afterwards):
- stage: the writeback stage's handler (``handler.Writeback``: the sealed quote opened, the
  writeback agent's mode, the delivery rule, ``Writer.write`` - idempotency lookups, the
  transaction, the read-back - and the ``task-written`` fact), one decision per note, each on its
  own patient and episode, as the stage runner calls it;
- raw: the same ``create_bundle`` transaction POSTed once, nothing looked up or read back;
- replay: the handler again on decisions already written (found by identifier, read back).
Per note it prints this process's CPU (user + system: the handler's work, the EHR is another
process) and the EHR requests the HTTP transport saw (the SMART token grant and metadata aside).
The sandbox declares ``batch``, so lookups and read-back go in one Bundle each; ``--no-batch``
measures an EHR without it.

    python -m bench.writeback [N] [C] [--no-batch]
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
import uuid
from pathlib import Path
from types import SimpleNamespace

import httpx

from bench.ehr import _run, sandbox_client
from services.core import evidence, schemas
from services.core.bus.context import Context
from services.core.config import Settings
from services.core.db import create_pool
from services.core.events import Event
from services.core.fhir import FhirClient
from services.core.httpclient import tls_context
from services.core.httptransport import AiohttpTransport
from services.core.secrets import SecretSettings
from services.core.tenancy import Registry, Tenant, topic_name
from services.core.tenantdb import TenantPools, provision_tenant_role, quote_ident, tenant_role
from services.writeback import resources as R
from services.writeback.config import WRITE_SCOPE
from services.writeback.deps import Deps
from services.writeback.handler import Writeback

DEFAULT_N = 200
DEFAULT_CONCURRENCY = 8
QUOTE = "grade 2 immune-mediated colitis"
#: Targets of the issue: writeback's CPU per note and EHR round trips per note.
TARGET_CPU_MS, TARGET_ROUND_TRIPS = 8.0, 10


def decision(run: str, i: int) -> dict:
    return {"decisionId": f"{run}-d{i}", "patient": f"{run}-p{i}", "category": "colitis", "grade": 2,
            "kind": "routine-task", "owner": "Practitioner/onc-1", "document": {"id": f"{run}-doc{i}", "versionId": "1"},
            "finding": {"start": 12, "end": 12 + len(QUOTE), "quote": QUOTE, "grade": 2, "category": "colitis"},
            "engineVersion": "rules-bench", "mode": "active", "episodeKey": f"{run}-ep{i}", "episodeAction": "open",
            "write": True, "noteTime": "2026-11-20T09:30:00Z"}


class Counting(httpx.AsyncBaseTransport):
    """Counts the FHIR interactions that reach the EHR (not the token grant or metadata), over the
    transport every outbound client gets (``async_client``)."""

    def __init__(self, limit: int):
        self.inner = AiohttpTransport(verify=tls_context(), limits=httpx.Limits(max_connections=limit))
        self.requests = 0

    async def handle_async_request(self, request):
        path = request.url.path
        if not (path.endswith("/metadata") or "/auth/" in path or "/.well-known/" in path):
            self.requests += 1
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


class Runner:
    """What ``Context`` asks of the stage runner: the tenant, the stage, the topic of a stream, the check."""

    def __init__(self, tenant: str):
        self.tenant, self.spec = tenant, SimpleNamespace(name="writeback")
        self.emitted = 0

    def resolve(self, stream: str) -> str:
        return topic_name(self.tenant, stream)

    def check(self, event: Event) -> None:
        schemas.check_outgoing(event.type, event.data)

    @property
    def publisher(self):
        return self


@contextlib.asynccontextmanager
async def provisioned(settings: Settings, secrets: SecretSettings, tenant: str):
    admin = await create_pool(settings, min_size=1, max_size=1)
    try:
        async with admin.acquire() as conn:
            await provision_tenant_role(conn, tenant, secrets)
        yield
    finally:
        async with admin.acquire() as conn:
            await conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
                               tenant_role(tenant))
            with contextlib.suppress(Exception):
                await conn.execute(f"DROP OWNED BY {quote_ident(tenant_role(tenant))}")
                await conn.execute(f"DROP ROLE IF EXISTS {quote_ident(tenant_role(tenant))}")
        await admin.close()


def cpu() -> float:
    times = os.times()
    return times.user + times.system


async def measure(n: int, concurrency: int, work) -> tuple[float, float]:
    """(per second, this process's CPU ms per call)."""
    before = cpu()
    rate = await _run(n, concurrency, work)
    return rate, 1000 * (cpu() - before) / n


async def main(n: int, concurrency: int, batch: bool = True) -> None:
    settings = Settings.from_env()
    secrets = SecretSettings.from_env()
    async with sandbox_client("bench-writeback", WRITE_SCOPE.split(), concurrency) as (plain, _):
        tenant = plain.base_url.rsplit("/", 1)[-1]
        transport = Counting(concurrency)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "tenants.toml"
            Registry(path, [Tenant(id=tenant, mode="active", partitions=1, ehr_base_url=plain.base_url)]).save()
            run_settings = settings.with_overrides(tenants_file=path)
            async with provisioned(settings, secrets, tenant), \
                    FhirClient(plain.base_url, credentials=plain.credentials, transport=transport) as client:
                if not batch:
                    client.capabilities = {**client.capabilities, "rest": [
                        {**rest, "interaction": [i for i in rest.get("interaction", []) if i.get("code") != "batch"]}
                        for rest in client.capabilities.get("rest", [])]}
                pools = TenantPools(run_settings, secrets)
                deps = Deps(run_settings, secrets, pools=pools, clients={tenant: client})
                try:
                    await deps.start()
                    handler, runner = Writeback(deps), Runner(tenant)
                    verified, raw = uuid.uuid4().hex[:6], uuid.uuid4().hex[:6]
                    events = {}

                    async def sealed(run: str, i: int) -> Event:
                        if (run, i) not in events:
                            events[(run, i)] = await evidence.seal_event(deps.keyring, Event.new(
                                "vigil.triage.decision", source=f"/triage/{tenant}", tenant=tenant,
                                key=f"{run}-p{i}", data=decision(run, i)))
                        return events[(run, i)]

                    async def handle(run: str, i: int) -> None:
                        ctx = Context(runner, await sealed(run, i), 1)
                        await handler(ctx.event, ctx)
                        runner.emitted += len(ctx.outputs)

                    await handle("warm", 0)  # token, connections, the Device, the tenant key
                    runner.emitted = 0
                    for i in range(n):       # the events are sealed before the clock starts
                        await sealed(verified, i)
                    start_requests = transport.requests
                    stage_rate, stage_cpu = await measure(n, concurrency, lambda i: handle(verified, i))
                    stage_trips = (transport.requests - start_requests) / n
                    emitted = runner.emitted
                    start_requests = transport.requests
                    raw_rate, raw_cpu = await measure(
                        n, concurrency, lambda i: client.transaction(R.create_bundle(decision(raw, i))))
                    raw_trips = (transport.requests - start_requests) / n
                    start_requests = transport.requests
                    replay_rate, replay_cpu = await measure(n, concurrency, lambda i: handle(verified, i))
                    replay_trips = (transport.requests - start_requests) / n
                finally:
                    await deps.close()
                    await pools.close()
    assert emitted == n, f"{emitted} task-written facts for {n} notes"
    print(f"writeback stage handler vs raw transaction, N={n}, concurrency={concurrency}, "
          f"batch={'yes' if batch else 'no'} (host load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    print(f"  {'':28s} {'notes/s':>8s} {'CPU ms/note':>12s} {'EHR round trips/note':>21s}")
    print(f"  {'stage (verified write)':28s} {stage_rate:8.1f} {stage_cpu:12.2f} {stage_trips:21.2f}")
    print(f"  {'raw transaction (baseline)':28s} {raw_rate:8.1f} {raw_cpu:12.2f} {raw_trips:21.2f}")
    print(f"  {'replay (already written)':28s} {replay_rate:8.1f} {replay_cpu:12.2f} {replay_trips:21.2f}")
    print(f"  ratios stage / raw: rate {stage_rate / raw_rate:.3f}, CPU {stage_cpu / raw_cpu:.2f}, "
          f"round trips {stage_trips / raw_trips:.1f}")
    print(f"  targets: CPU <= {TARGET_CPU_MS} ms/note: {'met' if stage_cpu <= TARGET_CPU_MS else 'NOT met'}; "
          f"writeback's EHR round trips {stage_trips:.0f} of the <= {TARGET_ROUND_TRIPS} per note end to end")


if __name__ == "__main__":
    flags = [a for a in sys.argv[1:] if a.startswith("--")]
    args = [int(a) for a in sys.argv[1:] if not a.startswith("--")][:2]
    asyncio.run(main(*(args + [DEFAULT_N, DEFAULT_CONCURRENCY][len(args):]), batch="--no-batch" not in flags))
