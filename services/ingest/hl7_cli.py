"""`vigil hl7 status --tenant T`: what the HL7 feed brought and what became of it (no PHI).

Messages in the receipt log, notes in Vigil's document store by status (``text`` / ``no-text``,
with the content types the no-text ones hold), patients in the index, and the newest notes kept
without text (document id, version, MSH-10, content types): the platform team's view of a feed.
"""
from __future__ import annotations

import asyncio
import json

import typer
from rich.console import Console
from rich.table import Table

from services.core.config import ConfigError, Settings
from services.core.tenancy import Registry, TenantError

app = typer.Typer(help="The HL7 v2 feed: what was received, stored and kept without text.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)


async def feed_status(settings: Settings, tenant: str, limit: int) -> dict:
    from services.core.secrets import SecretSettings
    from services.core.tenantdb import TenantPools

    pools = TenantPools(settings, SecretSettings.from_env())
    try:
        async with pools.tx(tenant, readonly=True) as conn:
            messages = await conn.fetchrow("SELECT count(*) AS n, max(received_at) AS last FROM ingest_hl7_messages "
                                           "WHERE tenant = $1", tenant)
            notes = await conn.fetch("SELECT status, count(*) AS n FROM ingest_documents WHERE tenant = $1 "
                                     "GROUP BY status", tenant)
            patients = await conn.fetchval("SELECT count(*) FROM ingest_patients WHERE tenant = $1", tenant)
            no_text = await conn.fetch(
                "SELECT id, version, control_id, content_types, created_at FROM ingest_documents WHERE tenant = $1 "
                "AND status = 'no-text' ORDER BY created_at DESC LIMIT $2", tenant, limit)
    finally:
        await pools.close()
    return {"tenant": tenant, "messages": messages["n"],
            "lastReceived": messages["last"].isoformat() if messages["last"] else None,
            "notes": {r["status"]: r["n"] for r in notes}, "patients": patients,
            "withoutText": [{"id": r["id"], "version": r["version"], "controlId": r["control_id"],
                             "contentTypes": list(r["content_types"]), "stored": r["created_at"].isoformat()}
                            for r in no_text]}


@app.command()
def status(tenant: str = typer.Option(..., "--tenant", help="Tenant id."),
           limit: int = typer.Option(20, "--limit", min=1, max=1000, help="Notes without text to list."),
           as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
    """Messages received, notes stored (with text / without), patients indexed, notes kept without text."""
    try:
        settings = Settings.from_env()
        Registry.load(settings.tenants_file).get(tenant)
    except (ConfigError, TenantError) as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2)
    try:
        report = asyncio.run(feed_status(settings, tenant, limit))
    except OSError as exc:
        err.print(f"[red]error:[/] the database is not reachable ({type(exc).__name__})")
        raise typer.Exit(1)
    if as_json:
        typer.echo(json.dumps(report))
        return
    console.print(f"{tenant}: {report['messages']} messages received (last {report['lastReceived'] or '-'}), "
                  f"notes with text {report['notes'].get('text', 0)}, without text "
                  f"{report['notes'].get('no-text', 0)}, patients indexed {report['patients']}")
    if report["withoutText"]:
        table = Table("document", "version", "MSH-10", "content types", "stored", title="notes kept without text")
        for row in report["withoutText"]:
            table.add_row(row["id"], str(row["version"]), row["controlId"], ", ".join(row["contentTypes"]),
                          row["stored"])
        console.print(table)
