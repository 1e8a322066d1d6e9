"""Bring the whole pipeline up for a plan (stack, tenants, services, subscriptions, and the
interface engine stand-in when a tenant's results go out as HL7v2) and take down exactly what
was brought up. Shared by `vigil demo`, the chaos suite and the benchmark.
"""
from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Callable

from services.commands.demo import tenants as tenant_setup
from services.commands.demo.engine import InterfaceEngine
from services.commands.demo.plan import SERVICES, DemoPlan, ServiceDef, available
from services.commands.demo.supervisor import Supervisor, SupervisorError
from services.core import devstack
from services.core.fhir import FhirClient, SmartCredentials

Log = Callable[[str], None]
OPTIONAL_HEALTH_TIMEOUT_S = 30.0


class PipelineError(RuntimeError):
    pass


@dataclass
class Pipeline:
    plan: DemoPlan
    tenants: tuple[tenant_setup.DemoTenant, ...]
    log: Log = lambda m: None
    supervisor: Supervisor | None = None
    started_stack: list[str] = field(default_factory=list)
    driver_credentials: dict[str, SmartCredentials] = field(default_factory=dict)
    practitioners: dict[str, dict[str, str]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    optional: bool = True  # also start the services the notes -> Tasks path does not need
    engine: InterfaceEngine | None = None  # the HL7v2 results receiver of tenants with an hl7v2 channel
    batch_lane: bool = False  # also start the batch lane (its inference, extraction and triage instances)
    _watching: threading.Event = field(default_factory=threading.Event)

    # -- up -------------------------------------------------------------------------------
    def up_stack(self) -> None:
        from services.ehr import cli as ehr_cli

        devstack.register(ehr_cli.DEVSTACK_COMPONENT)
        busy = self.plan.busy_ports()
        if busy:
            raise PipelineError(f"ports {busy} are in use (another demo running? `vigil dev status`); stop it first")
        before = {s.component: s.state for s in devstack.status(self.plan.settings)}
        devstack.up(self.plan.settings, log=self.log)
        self.started_stack = [name for name, state in before.items() if state == "down"]

    def setup_tenants(self, tenant_settings: dict[str, dict] | None = None) -> None:
        """EHR tenants and SMART clients, registry, onboarding, seed data, modes."""
        async def clients() -> dict[str, dict]:
            out = {}
            for t in self.tenants:
                out[t.id], self.driver_credentials[t.id] = await tenant_setup.register_clients(self.plan, t)
                out[t.id].update((tenant_settings or {}).get(t.id, {}))
            return out

        registry = tenant_setup.write_registry(self.plan, self.tenants, asyncio.run(clients()))
        for t in self.tenants:
            steps = tenant_setup.onboard(self.plan, registry.get(t.id))
            self.log(f"{t.id}: onboarded ({', '.join(f'{name}: {result}' for name, result in steps)})")

        async def seed() -> None:
            for t in self.tenants:
                async with self.client(t.id) as client:
                    summary = await tenant_setup.seed(client)
                    self.practitioners[t.id] = await tenant_setup.practitioner_ids(client)
                # seeded first, then the family: an epic-like EHR has its data but takes no Vigil writes
                family = await tenant_setup.set_family(self.plan, t)
                self.log(f"{t.id}: EHR plays {family}; results by {', '.join(t.profile().results)}")
                self.log(f"{t.id}: seeded ({len(summary['oncology']['patients'])} patients, "
                         f"{summary['oncology']['slots']} slots, Synthea sample: "
                         f"{summary['synthea'].get('reason') or ('loaded' if summary['synthea']['loaded'] else 'already there')})")
        asyncio.run(seed())

    async def set_modes(self) -> None:
        """Each tenant's mode and pilot list, kill switch off: through the control service (it alone
        writes modes), once it is up and before any note arrives (the Subscriptions come after)."""
        for t in self.tenants:
            state = await tenant_setup.set_modes(self.plan, t, self.practitioners[t.id])
            self.log(f"{t.id}: mode {state.mode}, pilot list {len(state.pilot_practitioners)} (via control)")

    def client(self, tenant: str) -> FhirClient:
        return FhirClient(f"{self.plan.settings.ehr_url}/fhir/{tenant}", credentials=self.driver_credentials[tenant])

    def required(self, service: ServiceDef) -> bool:
        """The notes -> results path needs it (for some tenant's integration profile)."""
        return service.required or service.name in tenant_setup.services_needed(self.tenants)

    def wanted(self, service: ServiceDef) -> bool:
        return (self.optional or self.required(service) or (service.batch and self.batch_lane)) and \
            (self.batch_lane or not service.batch)

    def services(self) -> list[ServiceDef]:
        return [s for s in SERVICES if available(s) and self.wanted(s)]

    def start_engine(self) -> None:
        if any(t.profile().delivers("hl7v2") for t in self.tenants):
            self.engine = InterfaceEngine(port=self.plan.port("engine"))
            self.engine.start()
            self.log(f"interface engine stand-in (HL7v2 results, AA) on 127.0.0.1:{self.engine.port}")

    def start_services(self) -> None:
        self.supervisor = Supervisor(self.plan)
        self.skipped = [s.name for s in SERVICES if not available(s) and self.wanted(s)]
        missing = sorted(set(self.skipped) & tenant_setup.services_needed(self.tenants))
        if missing:
            raise PipelineError(f"the tenants' integration profiles need {', '.join(missing)}, "
                                "which this checkout lacks")
        for service in self.services():
            self.supervisor.start(service)
        self.supervisor.wait_healthy([s.name for s in self.services() if self.required(s) or s.batch])
        for service in [s for s in self.services() if not self.required(s) and not s.batch]:
            try:
                self.supervisor.wait_healthy([service.name], timeout=OPTIONAL_HEALTH_TIMEOUT_S)
            except SupervisorError as exc:
                self.supervisor.stop(service.name)
                self.supervisor.unwatched.add(service.name)
                self.failed.append(service.name)
                self.log(f"{service.name} did not start; running without it: {str(exc).splitlines()[0]}")

    async def subscribe(self) -> None:
        for t in self.tenants:
            if not t.topic_subscriptions:
                self.log(f"{t.id}: no Subscriptions (its notes arrive on the HL7v2 feed)")
                continue
            async with self.client(t.id) as client:
                rows = await tenant_setup.subscribe(self.plan, client, t.id)
            self.log(f"{t.id}: {len(rows)} Subscriptions active")

    def up(self, tenant_settings: dict[str, dict] | None = None) -> None:
        self.up_stack()
        self.setup_tenants(tenant_settings)
        self.start_engine()
        self.start_services()
        asyncio.run(self.set_modes())
        self._watching.clear()
        self.supervisor.watch(self._watching, self.log)
        asyncio.run(self.subscribe())

    # -- down -----------------------------------------------------------------------------
    def down(self) -> None:
        """Stop every service started here, remove the Subscriptions, stop the stack parts started here."""
        self._watching.set()
        if self.supervisor is not None:
            self.supervisor.stop_all()

        async def unsubscribe() -> None:
            for t in self.tenants:
                if t.id in self.driver_credentials and t.topic_subscriptions:
                    async with self.client(t.id) as client:
                        await tenant_setup.unsubscribe(self.plan, client)
        try:
            asyncio.run(unsubscribe())
        except Exception as exc:  # the EHR may be down already; the services are stopped regardless
            self.log(f"could not remove Subscriptions: {type(exc).__name__}")
        if self.engine is not None:
            self.engine.stop()
        if self.started_stack:
            devstack.down(self.plan.settings, log=self.log, only=self.started_stack)
