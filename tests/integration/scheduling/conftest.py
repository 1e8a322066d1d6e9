"""Fixtures for the scheduling agent: a provisioned tenant (PostgreSQL role, Redis ACL user, key
table), the EHR sandbox with a read-write SMART client for tools, the tools gRPC server on
loopback, a practitioner with a fixed grid of free slots in March 2030, patients, and an agent
whose clock is fixed at Monday 4 March 2030 08:00 UTC.

``sched.say(patient, text)`` writes the patient's Communication into the EHR and runs the turn
(the agent reads the text back through tools), returning the ``TurnResult``.
"""
from __future__ import annotations

import contextlib
from datetime import datetime, timedelta, timezone

import pytest

from services.core import crypto, kv
from services.core.agentclients import AgentClients
from services.core.db import create_pool, ensure_schema
from services.core.grpc.settings import GrpcSettings
from services.core.secrets import SecretSettings
from services.core.tenancy import Registry, Tenant
from services.core.tenantdb import TenantPools, provision_tenant_role, quote_ident, tenant_role
from services.inference import app as inference_app
from services.scheduling.app import build_agent
from services.tools import app as tools_app
from services.tools.config import DEFAULT_SCOPE as TOOLS_SCOPE  # the tools client's default scopes

TEST_KEY = "k" * 48
NOW = datetime(2030, 3, 4, 8, 0, tzinfo=timezone.utc)          # a Monday
#: The slot grid: every weekday of 4..22 March 2030 at these hours (UTC), 30 minutes each.
HOURS = (9, 10, 14, 15)
DAYS = 19


@pytest.fixture(scope="session")
def secrets() -> SecretSettings:
    return SecretSettings.from_env({"VIGIL_ENV": "test"})


@pytest.fixture
async def provisioned(stack, tenant_id, secrets):
    admin = await create_pool(stack, min_size=1, max_size=2)
    await ensure_schema(admin, crypto.SCHEMA_MODULE, crypto.SCHEMA_STEPS)
    async with admin.acquire() as conn:
        await provision_tenant_role(conn, tenant_id, secrets)
    await kv.provision_tenant_user(stack, tenant_id, secrets)
    pools = TenantPools(stack, secrets)
    yield pools
    await pools.close()
    redis = kv.admin_client(stack)
    try:
        async for name in redis.scan_iter(match=f"vigil:{tenant_id}:*", count=100_000):
            await redis.delete(name)
    finally:
        await redis.aclose()
    await kv.remove_tenant_user(stack, tenant_id)
    async with admin.acquire() as conn:
        await conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
                           tenant_role(tenant_id))
        with contextlib.suppress(Exception):
            await conn.execute(f"DROP ROLE IF EXISTS {quote_ident(tenant_role(tenant_id))}")
    await admin.close()


def slot_time(day: int, hour: int) -> datetime:
    """2030-03-<day> <hour>:00 UTC."""
    return datetime(2030, 3, day, hour, 0, tzinfo=timezone.utc)


def z(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")



class Scheduling:
    def __init__(self, stack, tenant_id, ehr, pools, path, creds, key_file, grpc_settings):
        self.stack, self.tenant, self.ehr, self.pools, self.path = stack, tenant_id, ehr, pools, path
        self._creds, self._key_file, self.grpc_settings = creds, key_file, grpc_settings
        self.settings = stack.with_overrides(tenants_file=path)
        self.agents: list = []
        self.inference = None

    def registry(self, **settings) -> None:
        Registry(self.path, [Tenant(id=self.tenant, mode="active", partitions=4, ehr_base_url=self.ehr.base_url,
                                    settings={"fhir_client_id": "vigil-tools",
                                              "fhir_private_key_file": str(self._key_file),
                                              "fhir_key_id": self._creds.kid,
                                              "time_zone": "UTC", **settings})]).save()

    async def start_inference(self, env: dict | None = None):
        """The inference service on loopback (the llm engine's model calls go through its Chat);
        agents made after this call use it."""
        if self.inference is None:
            self.inference = await inference_app.start(self.settings, self.grpc_settings, address="127.0.0.1:0",
                                                        env={"VIGIL_ENV": "test", **(env or {})})
        return self.inference

    def new_agent(self):
        """A fresh agent instance (own gRPC channels and Redis clients): a new process, same Redis."""
        targets = {"tools": f"127.0.0.1:{self.tools.port}"}
        if self.inference is not None:
            targets["inference"] = f"127.0.0.1:{self.inference.port}"
        clients = AgentClients(self.grpc_settings, sub="scheduling", targets=targets)
        agent, store = build_agent(self.settings, self.pools, clients, clock=lambda: NOW)
        self.agents.append((agent, store, clients))
        self.agent = agent
        return agent

    async def close_agent(self, agent) -> None:
        for held in list(self.agents):
            if held[0] is agent:
                await held[1].close()
                await held[2].close()
                self.agents.remove(held)

    async def slots(self, practitioner: str, times: list[datetime]) -> dict[datetime, str]:
        schedule = (await self.ehr.client.create({
            "resourceType": "Schedule", "active": True, "actor": [{"reference": f"Practitioner/{practitioner}"}],
            "serviceType": [{"text": "Oncology follow-up"}]})).id
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"request": {"method": "POST", "url": "Slot"}, "resource": {
                "resourceType": "Slot", "schedule": {"reference": f"Schedule/{schedule}"}, "status": "free",
                "serviceType": [{"text": "Oncology follow-up"}], "start": z(t), "end": z(t + timedelta(minutes=30))}}
            for t in times]}
        response = await self.ehr.client.transaction(bundle)
        return {t: entry["response"]["location"].split("/")[1] for t, entry in zip(times, response["entry"])}

    async def practitioner(self) -> str:
        return (await self.ehr.client.create({"resourceType": "Practitioner", "name": [{"family": "Oncologist"}]})).id

    async def patient(self, family: str = "Testpatient") -> str:
        return (await self.ehr.client.create({"resourceType": "Patient", "name": [{"family": family}]})).id

    async def write_message(self, patient: str, text: str) -> tuple[str, str]:
        written = await self.ehr.client.create({
            "resourceType": "Communication", "status": "completed", "subject": {"reference": f"Patient/{patient}"},
            "sender": {"reference": f"Patient/{patient}"}, "payload": [{"contentString": text}],
            "sent": z(NOW)})
        return written.id, str(written.version)

    async def say(self, patient: str, text: str, agent=None):
        communication, version = await self.write_message(patient, text)
        return await (agent or self.agent).on_message(self.tenant, communication, version)

    async def open(self, patient: str, *, within_days: int = 14, owner: str | None = None, key: str | None = None,
                   agent=None):
        request = {"decisionId": f"d-{patient}", "patient": patient, "category": "colitis", "grade": 2,
                   "withinDays": within_days, "owner": owner}
        return await (agent or self.agent).start(self.tenant, request, key or f"ev-{patient}")

    # -- EHR state ------------------------------------------------------------------------------
    async def appointments(self, patient: str) -> list[dict]:
        return await self.ehr.client.search("Appointment", {"patient": f"Patient/{patient}"})

    async def booked(self, patient: str) -> list[dict]:
        return [a for a in await self.appointments(patient) if a["status"] == "booked"]

    async def slot_status(self, slot_id: str) -> str:
        return (await self.ehr.client.read("Slot", slot_id))["status"]

    async def tasks(self, patient: str) -> list[dict]:
        return await self.ehr.client.search("Task", {"patient": f"Patient/{patient}"})

    async def messages_to(self, patient: str) -> list[dict]:
        return [c for c in await self.ehr.client.search("Communication", {"patient": f"Patient/{patient}"})
                if (c.get("sender") or {}).get("reference") != f"Patient/{patient}"]


@pytest.fixture
async def sched(stack, tenant_id, ehr_tenant, provisioned, secrets, tmp_path):
    grpc_settings = GrpcSettings.from_env({"VIGIL_GRPC_TOKEN_KEY": TEST_KEY})
    creds = await ehr_tenant.admin.new_client(tenant_id, "vigil-tools", TOOLS_SCOPE.split())
    key_file = tmp_path / "tools.pem"
    key_file.write_text(creds.private_key_pem)
    handle = Scheduling(stack, tenant_id, ehr_tenant, provisioned, tmp_path / "tenants.toml", creds, key_file,
                        grpc_settings)
    handle.registry()
    handle.tools = await tools_app.start(handle.settings, grpc_settings, address="127.0.0.1:0", secrets=secrets)
    handle.new_agent()
    handle.doctor = await handle.practitioner()
    grid = [slot_time(d, h) for d in range(4, 4 + DAYS) for h in HOURS if slot_time(d, 0).weekday() < 5]
    handle.grid = await handle.slots(handle.doctor, grid)
    try:
        yield handle
    finally:
        for agent, *_ in list(handle.agents):
            await handle.close_agent(agent)
        await handle.tools.stop(grace=0)                 # no calls in flight at teardown
        if handle.inference is not None:
            await handle.inference.stop()
