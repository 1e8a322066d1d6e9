"""`vigil backfill export`: run (or resume) a FHIR Bulk Data ``$export`` of a tenant's EHR into a directory.

    vigil backfill export --tenant T --dir D [--type DocumentReference,Patient] [--since DATE]
                          [--group ID | --patients] [--json]

The EHR is reached with ingest's SMART client (tenant settings ``ehr_client_id``,
``ehr_private_key_file``, ...; see ``services.core.ehraccess``). Running the same command again with
the same directory resumes it. The tenant's integration profile must declare the ``batch`` trigger.
Exit codes: 0 done, 1 the EHR or the export failed (the message
says whether running again resumes), 2 usage (unknown tenant, a profile without the batch
trigger, bad date, a directory holding another export).
"""
from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone
from pathlib import Path

import typer
from rich.console import Console

from services.core.config import ConfigError, Settings
from services.core.errors import VigilError
from services.core.tenancy import Registry, TenantError

DEFAULT_TYPES = "DocumentReference,Patient"
console = Console()
err = Console(stderr=True)


def _fail(message: str, code: int) -> None:
    err.print(f"[red]error:[/] {message}")
    raise typer.Exit(code)


def _since(raw: str | None) -> datetime | None:
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        _fail(f"--since {raw!r}: expected a date (2024-01-31) or date-time (2024-01-31T08:00:00Z)", 2)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def export(tenant: str = typer.Option(..., "--tenant", help="Tenant id."),
           directory: Path = typer.Option(..., "--dir", help="Where the NDJSON files and the state file go."),
           types: str = typer.Option(DEFAULT_TYPES, "--type", help="Resource types, comma-separated."),
           since: str | None = typer.Option(None, "--since", help="Only resources changed after this date-time."),
           group: str | None = typer.Option(None, "--group", help="Export the members of this Group."),
           patients: bool = typer.Option(False, "--patients", help="Patient-level export (all patients)."),
           as_json: bool = typer.Option(False, "--json", help="Print the result as JSON.")) -> None:
    """Bulk Data $export of the tenant's EHR into --dir; run it again to resume after a crash."""
    from services.core.fhir import FhirClient
    from services.ingest.batch import bulk_export
    from services.ingest.directory import credentials_for

    if group and patients:
        _fail("--group and --patients are exclusive", 2)
    names = tuple(t.strip() for t in types.split(",") if t.strip())
    try:
        settings = Settings.from_env()
        cfg = Registry.load(settings.tenants_file).get(tenant)
        if not cfg.integration.has_trigger("batch"):
            _fail(f"tenant {tenant}: its integration profile does not declare batch sources "
                  "(add \"batch\" to [tenants.<id>.integration] triggers)", 2)
        credentials = credentials_for(cfg, settings)
        request = bulk_export.ExportRequest("group" if group else "patient" if patients else "system", group, names,
                                            _since(since))
    except (ConfigError, TenantError, ValueError) as exc:
        _fail(str(exc), 2)

    def event(kind: str, info: dict) -> None:
        if not as_json:
            detail = " ".join(f"{k}={v}" for k, v in info.items())
            err.print(f"[dim]export {kind}[/] {detail}")

    async def go():
        async with FhirClient(cfg.fhir_base(settings.ehr_url), credentials=credentials) as client:
            return await bulk_export.export(client, directory, request, on_event=event)

    try:
        result = asyncio.run(go())
    except bulk_export.ExportError as exc:
        _fail(str(exc), 2 if "another export" in str(exc) else 1)
    except (VigilError, OSError) as exc:
        _fail(f"export of {tenant} stopped ({exc}); run the same command again to resume", 1)
    summary = {"tenant": tenant, "directory": str(result.directory), "transaction_time": result.transaction_time,
               "files": result.files, "resources": result.resources, "downloaded_now": result.downloaded,
               "binaries_fetched": result.binaries_fetched, "resumed": result.resumed}
    if as_json:
        console.print_json(json.dumps(summary))
    else:
        counts = ", ".join(f"{n} {t}" for t, n in sorted(result.resources.items())) or "nothing"
        console.print(f"{tenant}: exported {counts} in {len(result.files)} files to {result.directory}"
                      f"{' (resumed)' if result.resumed else ''}")
