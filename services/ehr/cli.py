"""`vigil ehr serve | seed`: the EHR sandbox, and its dev-stack component."""
from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import typer

from services.core import devstack, probes
from services.core.config import ConfigError, Settings
from services.ehr.config import EhrSettings

app = typer.Typer(help="The EHR sandbox: a multi-tenant FHIR R4 server.", no_args_is_help=True)


def _settings() -> EhrSettings:
    try:
        return EhrSettings.from_env()
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)


@app.command()
def serve(host: str = typer.Option(None, help="Bind address (default: from VIGIL_EHR_URL)."),
          port: int = typer.Option(None, help="Port (default: from VIGIL_EHR_URL).")) -> None:
    """Serve the sandbox at /fhir/<tenant>/ (admin API at /admin, health at /healthz)."""
    import uvicorn

    from services.ehr.app import create_app

    settings = _settings()
    default_host, default_port = settings.core.ehr_host_port
    uvicorn.run(create_app(settings), host=host or default_host, port=port or default_port,
                log_level=settings.core.log_level, access_log=False)


@app.command()
def seed(tenant: str = typer.Option(..., "--tenant", help="Tenant id; its EHR is created if missing."),
         synthea: bool = typer.Option(True, help="Load the Synthea sample patient."),
         oncology: bool = typer.Option(True, help="Load the synthetic oncology panel."),
         notes: int = typer.Option(6, min=0, help="Clinical notes to add.")) -> None:
    """Create the tenant's EHR (if needed) and load seed data through the FHIR API."""
    from services.core.fhir import FhirClient
    from services.core.tenancy import TenantError, check_tenant_id
    from services.ehr.provision import AdminClient
    from services.ehr.seed import seed_tenant

    settings = _settings()
    try:
        check_tenant_id(tenant)
    except TenantError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)

    async def run() -> dict:
        url = settings.core.ehr_url
        async with AdminClient(url, settings.admin_secret) as admin:
            await admin.create_tenant(tenant)
            creds = await admin.new_client(tenant, "vigil-seed", ["system/*.cruds"])
        async with FhirClient(f"{url}/fhir/{tenant}", credentials=creds) as client:
            return await seed_tenant(client, synthea=synthea, oncology=oncology, notes=notes)

    try:
        summary = asyncio.run(run())
    except Exception as exc:  # a CLI reports and exits; no traceback for an unreachable server
        typer.echo(f"error: seeding failed: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(1)
    print(json.dumps(summary, indent=2))


def _start_ehr(settings: Settings, workdir: Path, host: str, port: int) -> None:
    devstack._spawn([sys.executable, "-m", "services.cli", "ehr", "serve", "--host", host, "--port", str(port)],
                    workdir)


#: The dev-stack entry: `vigil dev up` starts the sandbox, `vigil dev status` probes /healthz.
DEVSTACK_COMPONENT = devstack.Component("ehr", "HTTP (FHIR)", lambda s: s.ehr_host_port, probes.probe_http,
                                        _start_ehr)
