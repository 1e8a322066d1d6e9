"""`vigil backfill run` (a named, resumable batch run of a source) and `vigil backfill status`."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)
from rich.table import Table

from services.core.config import ConfigError, Settings
from services.core.errors import VigilError
from services.core.tenancy import Registry, TenantError

console = Console()
err = Console(stderr=True, soft_wrap=True)

EXIT_BAD_INPUT = 2


def _fail(message: str, code: int = 1):
    err.print(f"[red]error:[/] {message}", markup=True, highlight=False)
    raise typer.Exit(code)


def _options(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            _fail(f"--option {pair!r}: expected key=value", EXIT_BAD_INPUT)
        out[key.strip().replace("-", "_")] = value
    return out


def run(tenant: str = typer.Option(..., "--tenant", help="Tenant id."),
        source: str = typer.Option(..., "--source", help="Source kind: omop | bulk-ndjson | bulk-export."),
        path: Path = typer.Argument(..., help="The source's file or folder."),
        name: str = typer.Option(..., "--name", help="The run's name: running it again resumes it."),
        silent: bool = typer.Option(True, "--silent/--no-silent",
                                    help="Batch runs are silent: decisions go to the ledger only, never to the EHR."),
        option: list[str] = typer.Option([], "--option", help="Source option key=value (repeatable)."),
        chunk: int = typer.Option(200, "--chunk", min=1, max=5000, help="Notes per transaction."),
        quiet: bool = typer.Option(False, "--quiet", help="No progress bar.")) -> None:
    """Read PATH into the document store and publish each note on the batch lane, checkpointed:
    after a crash, the same command resumes with no duplicate and no gap."""
    from services.ingest.batch import kinds
    from services.ingest.batch.job import BatchJob, BatchJobError, check_name
    from services.ingest.batch.source import BatchSourceError
    from services.ingest.runtime import runtime

    from services.core.lanes import BATCH, LANES, deprioritise

    deprioritise(LANES[BATCH])  # a run is batch work: the real-time services get the processor first
    if not silent:
        _fail("batch runs are silent: their decisions go to the decision ledger only (use the real-time "
              "path for notes that should reach clinicians)", EXIT_BAD_INPUT)
    try:
        settings = Settings.from_env()
        cfg = Registry.load(settings.tenants_file).get(tenant)
        check_name(name)
        reader = kinds.open_source(source, path, _options(option))
    except (ConfigError, TenantError, BatchJobError, kinds.UnknownSource, BatchSourceError) as exc:
        _fail(str(exc), EXIT_BAD_INPUT)
    except OSError as exc:
        _fail(f"{path}: cannot read ({exc.__class__.__name__})", EXIT_BAD_INPUT)

    async def go():
        from services.ingest.hl7.patientkey import PatientKeys

        async with runtime(settings, Registry(settings.tenants_file, [cfg])) as rt:
            job = BatchJob(cfg.id, name, source, reader, pools=rt.pools, keyring=rt.keyring,
                           publishers=rt.publishers, patient_keys=PatientKeys(rt.secrets), chunk=chunk)
            row = await job.open()
            total = row.total
            columns = [TextColumn("[bold]{task.description}[/]"), BarColumn(), MofNCompleteColumn(),
                       TaskProgressColumn(), TextColumn("{task.fields[rate]} notes/s"),
                       TextColumn("published {task.fields[published]} skipped {task.fields[skipped]}"),
                       TimeElapsedColumn()] + ([TextColumn("ETA"), TimeRemainingColumn()] if total else [])
            with Progress(*columns, console=console, disable=quiet) as progress:
                bar = progress.add_task(f"{cfg.id}/{name}", total=total, completed=row.seen, rate="-",
                                        published=row.published, skipped=row.skipped)

                def on_chunk(current, counts) -> None:
                    speed = progress.tasks[bar].speed
                    progress.update(bar, completed=current.seen, published=current.published,
                                    skipped=current.skipped, rate=f"{speed:.0f}" if speed else "-")
                return await job.run(on_chunk)
    try:
        row = asyncio.run(go())
    except KeyboardInterrupt:
        _fail(f"run {name!r} interrupted; run the same command again to resume", 130)
    except (BatchJobError, BatchSourceError) as exc:
        _fail(str(exc), EXIT_BAD_INPUT)
    except (VigilError, OSError) as exc:
        _fail(f"run {name!r} of {tenant} stopped ({type(exc).__name__}: {str(exc)[:200]}); "
              "run the same command again to resume")
    console.print(f"{row.name}: {row.seen} seen, {row.stored} stored, {row.published} published, "
                  f"{row.skipped} skipped, {row.no_text} without text ({row.state})")


def status(tenant: str = typer.Option(None, "--tenant", help="Only this tenant (default: every tenant)."),
           as_json: bool = typer.Option(False, "--json", help="One JSON object per run, as a list.")) -> None:
    """List batch runs: name, source, seen, stored, published, skipped, state, rate."""
    from services.core.secrets import SecretSettings
    from services.core.tenantdb import TenantPools
    from services.ingest.batch.job import jobs

    try:
        settings = Settings.from_env()
        registry = Registry.load(settings.tenants_file)
        tenants = [registry.get(tenant).id] if tenant else [t.id for t in registry]
        secrets = SecretSettings.from_env()
    except (ConfigError, TenantError) as exc:
        _fail(str(exc), EXIT_BAD_INPUT)

    async def go():
        from services.core.db import create_pool
        from services.ingest.store import schema

        admin = await create_pool(settings, min_size=1, max_size=1)
        try:
            await schema.migrate(admin)
        finally:
            await admin.close()
        pools = TenantPools(settings, secrets)
        try:
            return [(t, r) for t in tenants for r in await jobs(pools, t)]
        finally:
            await pools.close()
    try:
        rows = asyncio.run(go())
    except (VigilError, OSError) as exc:
        _fail(f"cannot read the runs ({type(exc).__name__})")
    if as_json:
        typer.echo(json.dumps([{"tenant": t, **r.as_dict()} for t, r in rows], sort_keys=True))
        return
    table = Table(title="batch runs")
    for column in ("tenant", "name", "source", "seen", "stored", "published", "skipped", "state", "rate/s"):
        table.add_column(column)
    for t, r in rows:
        seen = f"{r.seen}/{r.total}" if r.total else str(r.seen)
        table.add_row(t, r.name, f"{r.source_kind}:{r.source_name}", seen, str(r.stored), str(r.published),
                      str(r.skipped), r.state + (f" ({r.error[:60]})" if r.error else ""),
                      f"{r.rate:.1f}" if r.rate is not None else "-")
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("run")(run)
    app.command("status")(status)
