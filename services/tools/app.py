"""The tools gRPC service: wiring and start-up (notes and patient context for extraction; slots,
holds, bookings, cancellations, messages and staff tasks for scheduling, the side effects through
the action ledger ``services.tools.action_ledger``).

    vigil serve tools            # or: python -m services.tools.app

Listens on VIGIL_GRPC_TOOLS_ADDR (default 127.0.0.1:50062). Every call needs a service
credential (``services.core.tokens``); the tenant of the call is the credential's, and each
tenant's EHR is read with that tenant's own FHIR client.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

from services.core.config import Settings
from services.core.db import create_pool, ensure_schema
from services.core.grpc.auth import SERVICE_ROLES
from services.core import serving
from services.core.grpc.server import RunningServer, serve as grpc_serve, start_server
from services.core.grpc.settings import GrpcSettings
from services.core.revocation import DenyList
from services.core.logging import configure, get_logger
from services.core.secrets import SecretSettings
from services.core.tenantdb import TenantPools
from services.core.tenantdir import TenantDirectory
from services.tools import action_ledger
from services.tools.action_ledger import ActionLedger
from services.tools.appointments import ListAppointments
from services.tools.book import Book
from services.tools.cancel import Cancel
from services.tools.document_store import DocumentStore
from services.tools.clients import TenantFhir, tenant_fhir
from services.tools.find_slots import FindSlots
from services.tools.get_action import GetAction
from services.tools.get_note import GetNote
from services.tools.hold_slot import HoldSlot, ReleaseSlot
from services.tools.holds import SlotHolds
from services.tools.messages import GetMessage, SendMessage
from services.tools.patient_context import GetPatientContext
from services.tools.record_consent import RecordConsent
from services.tools.scheduling_base import SchedulingDeps
from services.tools.staff_task import CreateStaffTask
from vigil.v1 import tools_pb2, tools_pb2_grpc

log = get_logger("vigil.tools")
SERVICE_NAME = tools_pb2.DESCRIPTOR.services_by_name["Tools"].full_name


class ToolsServicer(tools_pb2_grpc.ToolsServicer):
    """One operation module per RPC; this is the service's only routing table."""

    def __init__(self, tenants: TenantDirectory, fhir: TenantFhir, scheduling: SchedulingDeps,
                 store: DocumentStore):
        self.GetNote = GetNote(tenants, fhir, store)
        self.GetPatientContext = GetPatientContext(tenants, fhir)
        self.FindSlots = FindSlots(scheduling)
        self.HoldSlot = HoldSlot(scheduling)
        self.ReleaseSlot = ReleaseSlot(scheduling)
        self.Book = Book(scheduling)
        self.Cancel = Cancel(scheduling)
        self.ListAppointments = ListAppointments(scheduling)
        self.SendMessage = SendMessage(scheduling)
        self.GetMessage = GetMessage(scheduling)
        self.CreateStaffTask = CreateStaffTask(scheduling)
        self.GetAction = GetAction(scheduling)
        self.RecordConsent = RecordConsent(scheduling)


@dataclass
class ToolsApp:
    server: RunningServer
    fhir: TenantFhir
    pools: TenantPools
    holds: SlotHolds

    @property
    def port(self) -> int:
        return self.server.port

    async def stop(self, grace: float | None = 1.0) -> None:
        await self.server.stop(grace)
        await self.fhir.close()
        await self.holds.close()
        await self.pools.close()


async def migrate(settings: Settings) -> None:
    """The action ledger's table (admin DSN; idempotent, safe with concurrent start-ups)."""
    pool = await create_pool(settings, min_size=1, max_size=1)
    try:
        await ensure_schema(pool, action_ledger.SCHEMA_MODULE, action_ledger.SCHEMA_STEPS)
    finally:
        await pool.close()


async def start(settings: Settings, grpc_settings: GrpcSettings, *, address: str | None = None,
                secrets: SecretSettings | None = None) -> ToolsApp:
    await migrate(settings)
    secrets = secrets or SecretSettings.from_env()
    tenants = TenantDirectory(settings.tenants_file)
    fhir = tenant_fhir(settings.ehr_url, settings.environment)
    pools, holds = TenantPools(settings, secrets), SlotHolds(settings, secrets)
    servicer = ToolsServicer(tenants, fhir, SchedulingDeps(tenants, fhir, ActionLedger(pools), holds),
                             DocumentStore(pools))
    server = await start_server([(tools_pb2_grpc.add_ToolsServicer_to_server, servicer, SERVICE_NAME)],
                                grpc_settings, address or grpc_settings.address("tools"),
                                allowed_roles=SERVICE_ROLES, revocations=await DenyList(settings).start())
    return ToolsApp(server, fhir, pools, holds)


async def serve(env: Mapping[str, str] | None = None) -> None:
    source = os.environ if env is None else env
    settings = Settings.from_env(source)
    configure(settings.log_level)
    grpc_settings = GrpcSettings.from_env(source)
    await grpc_serve("tools", lambda: start(settings, grpc_settings))


if __name__ == "__main__":
    serving.main(serve)
