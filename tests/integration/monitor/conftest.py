"""Fixtures of the monitor tests: a tenant with its PostgreSQL role and topics, synthetic events
built with ``services.core.events.Event`` and published with ``Publisher``, and the monitor's
faust worker as a child process (``python -m services.monitor.app``) on a free port."""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from services.control import modes as control_modes
from services.core import crypto, evidence
from services.core.bus import Publisher
from services.core.crypto import Keyring
from services.core.db import create_pool, ensure_schema
from services.core.events import Event, deterministic_id
from services.core.secrets import SecretSettings
from services.core.tenancy import Registry, Tenant
from services.core.tenantdb import TenantPools, provision_tenant_role, tenant_role
from services.core.topics import ensure_tenant_topics
from services.monitor import schema
from services.monitor.store import MonitorStore
from tests.fixtures.ports import free_port

REPO = Path(__file__).resolve().parents[3]
T0 = datetime(2026, 1, 5, 8, 0, tzinfo=timezone.utc)
VERSION = "rules-1.0.0+test"



def at(event: Event, when: datetime) -> Event:
    return dataclasses.replace(event, time=when)


def findings_event(tenant: str, when: datetime, categories: list[tuple[str, int | None]], *, length: int = 1200,
                   note_type: str = "11506-3", version: str = VERSION, patient: str | None = None) -> Event:
    patient = patient or f"p-{uuid.uuid4().hex[:8]}"
    doc = f"doc-{uuid.uuid4().hex[:10]}"
    data = {"document": {"id": doc, "versionId": "1"}, "patient": patient, "engine": "rules",
            "engineVersion": version, "promptHash": None, "noteTime": when.isoformat(), "reviewRequired": False,
            "noteLength": length, "noteType": note_type,
            "findings": [{"category": c, "grade": g, "start": 0, "end": 5, "quote": "xxxxx",
                          "attribution": "immunotherapy", "confidence": 0.9} for c, g in categories]}
    return at(Event.new("vigil.extraction.findings", source=f"/extraction/{tenant}", tenant=tenant, key=patient,
                        data=data, id=deterministic_id("findings", doc)), when)


def decision_event(tenant: str, when: datetime, decision_id: str, patient: str, category: str,
                   grade: int = 2, kind: str = "routine-task", version: str = VERSION) -> Event:
    data = {"decisionId": decision_id, "patient": patient, "category": category, "grade": grade, "kind": kind,
            "owner": "Practitioner/onc-1", "document": {"id": "doc-1", "versionId": "1"},
            "finding": {"start": 0, "end": 5, "quote": "xxxxx", "grade": grade, "category": category},
            "engineVersion": version, "mode": "active", "episodeKey": f"{patient}|{category}"}
    return at(Event.new("vigil.triage.decision", source=f"/triage/{tenant}", tenant=tenant, key=patient, data=data,
                        id=deterministic_id("decision", decision_id)), when)


def written_event(tenant: str, when: datetime, decision_id: str, patient: str, category: str, task_id: str,
                  note_time: datetime, kind: str = "routine-task", version: str = VERSION) -> Event:
    data = {"decisionId": decision_id, "patient": patient, "kind": kind, "category": category, "grade": 2,
            "action": "created", "task": {"id": task_id, "versionId": "1"}, "owner": "Practitioner/onc-1",
            "noteTime": note_time.isoformat(), "writtenTime": when.isoformat(),
            "refs": [f"Task/{task_id}/_history/1"], "engineVersion": version}
    return at(Event.new("vigil.writeback.task-written", source=f"/writeback/{tenant}", tenant=tenant, key=patient,
                        data=data, id=deterministic_id("written", task_id)), when)


def updated_event(tenant: str, when: datetime, task_id: str, patient: str, status: str,
                  reason: str | None = None) -> Event:
    data = {"task": {"id": task_id, "versionId": "2"}, "patient": patient, "status": status, "statusReason": reason,
            "note": None, "lastUpdated": when.isoformat()}
    return at(Event.new("vigil.ehr.task-updated", source=f"/ingest/{tenant}", tenant=tenant, key=patient, data=data,
                        id=deterministic_id("updated", task_id, status)), when)


def task_events(tenant: str, when: datetime, category: str, *, tta: timedelta, action: str | None,
                reason: str | None = None, acted_after: timedelta = timedelta(hours=2)) -> dict[str, list[Event]]:
    """A decision, its Task written ``tta`` after the note, and optionally the clinician's action."""
    patient, decision_id, task_id = (f"p-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex, uuid.uuid4().hex[:12])
    written = when + tta
    actions = [decision_event(tenant, when, decision_id, patient, category)]
    feedback = [written_event(tenant, written, decision_id, patient, category, task_id, note_time=when)]
    if action is not None:
        status = {"accepted": "completed", "overridden": "rejected"}[action]
        feedback.append(updated_event(tenant, written + acted_after, task_id, patient, status, reason))
    return {"actions": actions, "feedback": feedback}


BASE_MIX = [("colitis", 2)] * 5 + [("hepatitis", 3)] * 3 + [("rash", 1)] * 2
SHIFTED_MIX = [("colitis", 2)] * 1 + [("hepatitis", 3)] * 2 + [("rash", 1)] * 7


def notes(tenant, start, days, per_day, mix, *, length=1200, note_type="11506-3"):
    """``per_day`` notes a day; the i-th note of the run carries ``mix[i % len(mix)]`` (or nothing)."""
    out, i = [], 0
    for day in range(days):
        for n in range(per_day):
            when = start + timedelta(days=day, minutes=7 * n)
            entry = mix[i % len(mix)]
            out.append(findings_event(tenant, when, [entry] if entry else [], length=length, note_type=note_type))
            i += 1
    return out


DRIFT_ENV = dict(VIGIL_MONITOR_BASELINE_DAYS=7, VIGIL_MONITOR_CURRENT_DAYS=3, VIGIL_MONITOR_DRIFT_MIN_COUNT=20,
                 VIGIL_MONITOR_DRIFT_INTERVAL_S=1, VIGIL_MONITOR_OVERRIDE_MIN_ACTIONS=5)


class MonitorHarness:
    def __init__(self, stack, tenant: str, pools: TenantPools, path: Path, tmp: Path):
        self.stack, self.tenant, self.pools, self.path, self.tmp = stack, tenant, pools, path, tmp
        self.settings = stack.with_overrides(tenants_file=path)
        self.store = MonitorStore(pools)
        self.port: int | None = None
        self._procs: list[subprocess.Popen] = []

    def registry(self, mode: str = "silent", **settings) -> Tenant:
        entry = Tenant(id=self.tenant, mode=mode, partitions=4, settings=settings)
        Registry(self.path, [entry]).save()
        return entry

    def env(self, **extra) -> dict[str, str]:
        env = dict(os.environ)
        env.update({"VIGIL_TENANTS_FILE": str(self.path), "VIGIL_POSTGRES_DSN": self.stack.postgres_dsn,
                    "VIGIL_REDIS_URL": self.stack.redis_url, "VIGIL_KAFKA_BOOTSTRAP": self.stack.kafka.bootstrap,
                    "VIGIL_ENV": "test", "VIGIL_STATE_DIR": str(self.tmp / "state"), "VIGIL_LOG_LEVEL": "info"})
        env.pop("VIGIL_MASTER_KEY", None)
        env.pop("VIGIL_MASTER_KEY_FILE", None)
        env.update({k: str(v) for k, v in extra.items()})
        return env

    async def publish(self, stream: str, events: list[Event]) -> None:
        await self.publish_for(self.tenant, stream, events)

    async def publish_for(self, tenant: str, stream: str, events: list[Event]) -> None:
        """Publish as the stages would: evidence quotes sealed with the tenant key."""
        keyring = Keyring(self.pools)
        async with Publisher(self.settings, tenant) as pub:
            await pub.publish_many(stream, [await evidence.seal_event(keyring, e) for e in events])

    async def publish_all(self, groups: list[dict[str, list[Event]]]) -> None:
        for stream in ("findings", "actions", "feedback"):
            events = [e for g in groups for e in g.get(stream, [])]
            if events:
                await self.publish(stream, events)

    @contextlib.asynccontextmanager
    async def worker(self, *, app_id: str | None = None, registry: bool = False, **extra):
        """The monitor worker for this tenant only (``registry``: for every tenant of the registry
        file, followed while it runs), with its own app id (its consumer group)."""
        self.port = free_port()
        scope = {} if registry else {"VIGIL_MONITOR_TENANTS": self.tenant}
        env = self.env(**scope, VIGIL_MONITOR_APP_ID=app_id or f"vigil-platform.monitor-{self.tenant}",
                       VIGIL_METRICS_PORT=self.port, VIGIL_MONITOR_GOLD_INTERVAL_S=0, **extra)
        log = open(self.tmp / f"monitor-{len(self._procs)}.log", "wb")
        proc = subprocess.Popen([sys.executable, "-m", "services.monitor.app"], cwd=REPO, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        self._procs.append(proc)
        try:
            await self.wait(lambda: self._get("/healthz")[0] == 200 or proc.poll() is not None, timeout=60)
            assert proc.poll() is None, (self.tmp / f"monitor-{len(self._procs) - 1}.log").read_text()[-3000:]
            yield proc
        except BaseException:
            print((self.tmp / f"monitor-{len(self._procs) - 1}.log").read_text(errors="replace")[-6000:])
            raise
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(proc.wait, 20)
            except subprocess.TimeoutExpired:
                proc.kill()
                await asyncio.to_thread(proc.wait)
            log.close()

    def log_text(self) -> str:
        return "\n".join((self.tmp / f"monitor-{i}.log").read_text(errors="replace") for i in range(len(self._procs)))

    def _get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=3) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError:
            return 0, ""

    async def get(self, path: str) -> tuple[int, str]:
        return await asyncio.to_thread(self._get, path)

    async def wait(self, predicate, timeout: float = 60.0, interval: float = 0.3):
        deadline = time.monotonic() + timeout
        while True:
            got = predicate()
            if asyncio.iscoroutine(got):
                got = await got
            if got:
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met within {timeout} s")
            await asyncio.sleep(interval)

    async def metric(self, name: str, tenant: str | None = None) -> float:
        """Sum of a Prometheus series of the running worker for ``tenant`` (default this test's)."""
        status, body = await self.get("/metrics")
        if status != 200:
            return 0.0
        label = f'tenant="{tenant or self.tenant}"'
        return sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines()
                   if line.startswith(name + "{") and label in line)

    async def window_sum(self, metric: str, category: str | None = None) -> float:
        async with self.pools.tx(self.tenant, readonly=True) as conn:
            return float(await conn.fetchval(
                "SELECT coalesce(sum(value), 0) FROM monitor_windows WHERE tenant = $1 AND metric = $2 AND "
                "($3::text IS NULL OR category = $3)", self.tenant, metric, category))


@pytest.fixture(scope="session")
def mon_secrets() -> SecretSettings:
    return SecretSettings.from_env({"VIGIL_ENV": "test"})


@pytest.fixture
async def mon(stack, tenant_id, mon_secrets, tmp_path):
    admin = await create_pool(stack, min_size=1, max_size=2)
    await schema.ensure_schema(admin)
    await control_modes.ensure_schema(admin)  # the modes table (the control service owns it)
    await ensure_schema(admin, crypto.SCHEMA_MODULE, crypto.SCHEMA_STEPS)  # the quotes are sealed
    async with admin.acquire() as conn:
        await provision_tenant_role(conn, tenant_id, mon_secrets)
    await ensure_tenant_topics(stack, Tenant(id=tenant_id, partitions=4))
    pools = TenantPools(stack, mon_secrets)
    handle = MonitorHarness(stack, tenant_id, pools, tmp_path / "tenants.toml", tmp_path)
    handle.registry()
    yield handle
    await pools.close()
    async with admin.acquire() as conn:
        await conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
                           tenant_role(tenant_id))
    await admin.close()
