"""The same notes as an OMOP NOTE CSV and as FHIR Bulk Data NDJSON give the same decisions; the OMOP
backfill, SIGKILLed midway and run again, leaves no duplicate and no gap (``bench.crawl_formats``
at a small N: the same code path, with the batch lane's stages in this process).

Two fresh tenants, one per format; `vigil backfill run` is the real CLI in its own process.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import uuid

import pytest

from bench import crawl_formats
from services.control import modes as control_modes
from services.core import kv
from services.core.agentclients import AgentClients
from services.core.bus import ensure_stage_topics
from services.core.bus.service import StageHost
from services.core.db import create_pool, ensure_schema
from services.core.grpc.settings import GrpcSettings
from services.core.lanes import BATCH, BATCH_KEY_LANES, LANES
from services.core.tenancy import Registry, Tenant
from services.core.tenantdb import TenantPools, provision_tenant_role
from services.core.topics import ensure_tenant_topics
from services.extraction import app as extraction_app
from services.inference import app as inference_app
from services.ingest.store import schema as ingest_schema
from services.tools import app as tools_app
from services.triage import app as triage_app, episodes, ledger
from tests.fixtures.writeback import FAST_RETRY, FAST_TUNING, drop_tenant

NOTES = 40
CHUNK = 5
TOKEN_KEY = "k" * 48



@pytest.fixture
async def two_tenants(stack, wb_secrets, tmp_path):
    """Two provisioned tenants (PostgreSQL role, Redis user, topics, tables) in one registry file."""
    ids = ["t" + uuid.uuid4().hex[:12] for _ in crawl_formats.FORMATS]
    tenants = [Tenant(id=t, display_name=f"Formats {t}", partitions=4, mode="silent", settings={"engine": "rules"})
               for t in ids]
    path = tmp_path / "tenants.toml"
    Registry(path, tenants).save()
    admin = await create_pool(stack, min_size=1, max_size=2)
    await control_modes.ensure_schema(admin)
    await ledger.ensure_schema(admin)
    await ensure_schema(admin, episodes.SCHEMA_MODULE, episodes.SCHEMA_STEPS)
    await ingest_schema.migrate(admin)
    for t in tenants:
        async with admin.acquire() as conn:
            await provision_tenant_role(conn, t.id, wb_secrets)
        await kv.provision_tenant_user(stack, t.id, wb_secrets)
        await ensure_tenant_topics(stack, t)
    pools = TenantPools(stack, wb_secrets, max_size=8)
    try:
        yield stack.with_overrides(tenants_file=path), path, pools, dict(zip(crawl_formats.FORMATS, ids))
    finally:
        await pools.close()
        for t in ids:
            await drop_tenant(stack, admin, t)
        await admin.close()


@contextlib.asynccontextmanager
async def batch_lane(settings, pools, tenants: list[str]):
    """tools + inference (loopback gRPC) and extraction-batch + triage-batch for the tenants."""
    grpc = GrpcSettings.from_env({"VIGIL_GRPC_TOKEN_KEY": TOKEN_KEY})
    tools = await tools_app.start(settings, grpc, address="127.0.0.1:0", secrets=pools.secrets)
    inference = await inference_app.start(settings, grpc, address="127.0.0.1:0", env={})
    clients = AgentClients(grpc, sub="formats", targets={"tools": f"127.0.0.1:{tools.port}",
                                                        "inference": f"127.0.0.1:{inference.port}"})
    lane = LANES[BATCH]
    specs = [*extraction_app.specs(clients, pools, lane, retry=FAST_RETRY,
                                   tuning=dataclasses.replace(FAST_TUNING, key_lanes=BATCH_KEY_LANES)),
             *triage_app.specs(pools, clients, settings, lane, retry=FAST_RETRY, tuning=FAST_TUNING)]
    for t in tenants:
        await ensure_stage_topics(settings, Tenant(id=t), specs)
    host = StageHost(settings, specs, port=0, host="127.0.0.1", tenants=tenants)
    await host.start()
    stop = asyncio.Event()
    task = asyncio.create_task(host.run(stop))
    try:
        yield
    finally:
        stop.set()
        await task
        await host.stop()
        await clients.close()
        await tools.stop()
        await inference.stop()


async def test_omop_and_bulk_ndjson_give_the_same_decisions_and_a_killed_run_resumes_exactly(two_tenants,
                                                                                            tmp_path):
    settings, registry, pools, tenants = two_tenants
    inputs = crawl_formats.write_inputs(tmp_path / "notes", NOTES)
    assert inputs.median_chars > 2000  # realistic, templated notes
    env = dict(os.environ, VIGIL_KAFKA_BOOTSTRAP=settings.kafka.bootstrap, VIGIL_REDIS_URL=settings.redis_url,
               VIGIL_POSTGRES_DSN=settings.postgres_dsn, VIGIL_TENANTS_FILE=str(registry), VIGIL_ENV="test",
               VIGIL_LOG_LEVEL="warning")
    runs = []
    async with batch_lane(settings, pools, list(tenants.values())), crawl_formats.Lane(settings) as lane:
        for fmt in crawl_formats.FORMATS:
            runs.append(await crawl_formats.crawl(
                inputs, fmt, tenants[fmt], f"formats-{fmt}", env=env, pools=pools, lane=lane, chunk=CHUNK,
                kill_at=NOTES // 2 if fmt == "omop" else None, run_timeout=100, stall_s=60))
    report = await crawl_formats.check(inputs, runs, pools)

    omop, ndjson = report["formats"]["omop"], report["formats"]["bulk-ndjson"]
    assert omop["starts"] == 2 and NOTES // 2 <= omop["killed_at_seen"] < NOTES  # killed midway, then resumed
    assert (report["differences"], report["duplicates"], report["gaps"]) == (0, 0, 0), crawl_formats.table(report)
    for f in (omop, ndjson):
        assert f["stored_documents"] == NOTES and f["status_ok"]
        assert f["status"] == {"state": "done", "seen": NOTES, "stored": NOTES, "published": NOTES, "skipped": 0,
                               "no_text": 0}
    # the realistic notes hold irAEs: the comparison is over real decisions, the same in both formats
    assert omop["decisions"] == ndjson["decisions"] > 0
    assert omop["notes_with_decisions"] == ndjson["notes_with_decisions"] > 0
    assert not crawl_formats.failed(report)
    # the check is not vacuous: a run without decisions, or a note never stored, is caught
    missing = await crawl_formats.check(inputs, [runs[0], dataclasses.replace(runs[1], name="formats-none")], pools)
    assert missing["differences"] == omop["notes_with_decisions"] and crawl_formats.failed(missing)
    extra = dataclasses.replace(inputs, note_ids=[*inputs.note_ids, "9999999"])
    assert (await crawl_formats.check(extra, runs, pools))["gaps"] == 2

