"""`vigil tenant add | list | show`: onboarding and the tenant registry."""
from __future__ import annotations

import asyncio
import json

import typer
from rich.console import Console
from rich.table import Table

from services.core import contracts
from services.core.config import Settings
from services.core.tenancy import MODES, Registry, Tenant, TenantError
from services.core.topics import ensure_tenant_topics

app = typer.Typer(help="Onboard and inspect tenants.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)

#: Steps run by `vigil tenant add`, in order; each takes (settings, tenant) and returns a short summary.
ONBOARDING_STEPS: list[tuple[str, object]] = [
    ("topics", lambda settings, tenant: f"{len(asyncio.run(ensure_tenant_topics(settings, tenant)))} created"),
]


def register_step(name: str, step) -> None:
    if all(existing != name for existing, _ in ONBOARDING_STEPS):
        ONBOARDING_STEPS.append((name, step))


@app.command()
def add(name: str, display_name: str = typer.Option("", help="Human-readable name."),
        partitions: int = typer.Option(4, min=1, help="Partitions per topic."),
        mode: str = typer.Option("silent", help=f"One of {', '.join(MODES)}."),
        hl7_facility: list[str] = typer.Option(None, "--hl7-facility", help="MSH-4/MSH-6 values for this tenant."),
        ehr_base_url: str = typer.Option("", help="The tenant's FHIR base URL (default: the sandbox)."),
        ) -> None:
    """Add (or repair) a tenant: registry entry, topics, credentials."""
    settings = Settings.from_env()
    try:
        registry = Registry.load(settings.tenants_file)
        tenant = Tenant(id=name, display_name=display_name or name, partitions=partitions, mode=mode,
                        hl7_facilities=tuple(hl7_facility or ()), ehr_base_url=ehr_base_url,
                        settings=registry.get(name).settings if name in registry else {})
    except TenantError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2)
    registry.put(tenant)
    registry.save()
    table = Table(title=f"tenant {name}")
    table.add_column("step")
    table.add_column("result")
    table.add_row("registry", str(settings.tenants_file))
    for step_name, step in ONBOARDING_STEPS:
        try:
            table.add_row(step_name, str(step(settings, tenant)))
        except Exception as exc:  # report which step failed, keep the registry entry for a re-run
            err.print(f"[red]error:[/] onboarding step {step_name} failed: {type(exc).__name__}: {exc}")
            raise typer.Exit(1)
    console.print(table)


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json")) -> None:
    """All tenants in the registry."""
    registry = Registry.load(Settings.from_env().tenants_file)
    if as_json:
        print(json.dumps([{"id": t.id, **t.to_table()} for t in registry]))
        return
    table = Table(title="tenants")
    for column in ("id", "name", "mode", "partitions", "hl7 facilities"):
        table.add_column(column)
    for t in registry:
        table.add_row(t.id, t.display_name, t.mode, str(t.partitions), ", ".join(t.hl7_facilities))
    console.print(table)


@app.command()
def show(name: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """One tenant's settings."""
    settings = Settings.from_env()
    try:
        tenant = Registry.load(settings.tenants_file).get(name)
    except TenantError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2)
    data = {"id": tenant.id, **tenant.to_table(), "integration": tenant.integration.to_table(),
            "integration_declared": tenant.integration.declared, "fhir_base": tenant.fhir_base(settings.ehr_url),
            "topics": [tenant.topic(s) for s in (contracts.EHR_EVENTS, contracts.FINDINGS, contracts.ACTIONS,
                                                       contracts.SCHEDULING, contracts.FEEDBACK, contracts.DLQ)]}
    if as_json:
        print(json.dumps(data))
    else:
        console.print_json(json.dumps(data))
