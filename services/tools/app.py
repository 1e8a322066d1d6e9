"""The tools gRPC service: wiring and start-up.

    vigil serve tools            # or: python -m services.tools.app

Listens on VIGIL_GRPC_TOOLS_ADDR (default 127.0.0.1:50062). Every call needs a service
credential (``services.core.tokens``); the tenant of the call is the credential's, and each
tenant's EHR is read with that tenant's own FHIR client.
"""
from __future__ import annotations

import asyncio
import os
import signal
from dataclasses import dataclass
from typing import Mapping

from services.core.config import Settings
from services.core.grpc import GrpcSettings, RunningServer, start_server
from services.core.logging import configure, get_logger
from services.core.tenantdir import TenantDirectory
from services.tools.clients import TenantFhir
from services.tools.get_note import GetNote
from services.tools.patient_context import GetPatientContext
from vigil.v1 import tools_pb2, tools_pb2_grpc

log = get_logger("vigil.tools")
SERVICE_NAME = tools_pb2.DESCRIPTOR.services_by_name["Tools"].full_name


class ToolsServicer(tools_pb2_grpc.ToolsServicer):
    """One operation module per RPC; this is the service's only routing table."""

    def __init__(self, tenants: TenantDirectory, fhir: TenantFhir):
        self.GetNote = GetNote(tenants, fhir)
        self.GetPatientContext = GetPatientContext(tenants, fhir)


@dataclass
class ToolsApp:
    server: RunningServer
    fhir: TenantFhir

    @property
    def port(self) -> int:
        return self.server.port

    async def stop(self) -> None:
        await self.server.stop()
        await self.fhir.close()


async def start(settings: Settings, grpc_settings: GrpcSettings, *, address: str | None = None) -> ToolsApp:
    fhir = TenantFhir(settings.ehr_url, settings.environment)
    servicer = ToolsServicer(TenantDirectory(settings.tenants_file), fhir)
    server = await start_server([(tools_pb2_grpc.add_ToolsServicer_to_server, servicer, SERVICE_NAME)],
                                grpc_settings, address or grpc_settings.address("tools"))
    return ToolsApp(server, fhir)


async def serve(env: Mapping[str, str] | None = None) -> None:
    source = os.environ if env is None else env
    settings = Settings.from_env(source)
    configure(settings.log_level)
    app = await start(settings, GrpcSettings.from_env(source))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("tools.started", port=app.port)
    await stop.wait()
    await app.stop()


if __name__ == "__main__":
    asyncio.run(serve())
