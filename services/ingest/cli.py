"""`vigil subscribe --tenant T` and `vigil backfill --tenant T --since DATE`."""
from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from services.core.config import ConfigError, Settings
from services.core.errors import VigilError
from services.core.tenancy import Registry, TenantError
from services.ingest.batch import export_cli

console = Console()
err = Console(stderr=True)

subscribe_app = typer.Typer(help="Create or repair the tenant's Subscriptions in its EHR.")
backfill_app = typer.Typer(help="Publish the tenant's DocumentReferences changed since a date, or run a batch source.")


def _fail(message: str, code: int = 1):
    err.print(f"[red]error:[/] {message}")
    raise typer.Exit(code)


def _tenant(settings: Settings, tenant: str):
    try:
        return Registry.load(settings.tenants_file).get(tenant)
    except TenantError as exc:
        _fail(str(exc), 2)


def parse_since(raw: str) -> datetime:
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        _fail(f"--since {raw!r}: expected a date (2024-01-31) or date-time (2024-01-31T08:00:00Z)", 2)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


@subscribe_app.callback(invoke_without_command=True)
def subscribe(tenant: str = typer.Option(..., "--tenant", help="Tenant id."),
              empty: bool = typer.Option(False, "--empty", help="R4 criteria: empty notifications (no payload); "
                                                                 "ingest searches by _lastUpdated for the change.")) -> None:
    """Create the tenant's Subscriptions in the style its integration profile names (backport-topic: one per
    topic; r4-criteria: one per criteria), or repair errored / drifted ones."""
    from services.core.secrets import SecretSettings
    from services.ingest.config import IngestSettings
    from services.ingest.directory import EhrDirectory
    from services.ingest.receiver.auth import channel_header
    from services.ingest.subscribe import ensure_r4_subscriptions, ensure_subscriptions

    try:
        settings, ingest = Settings.from_env(), IngestSettings.from_env()
        secrets = SecretSettings.from_env()
    except ConfigError as exc:
        _fail(str(exc), 2)
    cfg = _tenant(settings, tenant)
    profile = cfg.integration
    styles = [t for t in ("backport-topic", "r4-criteria") if profile.has_trigger(t)]
    if not styles:
        console.print(f"tenant {cfg.id}: no Subscriptions to make: its EHR ({profile.family}) delivers by "
                      f"{', '.join(profile.triggers)} (integration.triggers has neither backport-topic nor "
                      "r4-criteria)")
        return
    notify = f"{ingest.public_url}/notify/{cfg.id}"

    async def go():
        directory = EhrDirectory(settings, Registry(settings.tenants_file, [cfg]))
        try:
            ehr = await directory(cfg.id)
            rows = []
            if "backport-topic" in styles:
                rows += await ensure_subscriptions(ehr.client, notify, channel_header(secrets, cfg.id))
            if "r4-criteria" in styles:
                rows += await ensure_r4_subscriptions(ehr.client, notify, channel_header(secrets, cfg.id),
                                                      payload=not empty)
            return rows
        finally:
            await directory.close()
    try:
        rows = asyncio.run(go())
    except (VigilError, OSError) as exc:
        _fail(f"EHR of tenant {cfg.id}: {exc}")
    table = Table(title=f"subscriptions of {cfg.id}")
    for column in ("topic", "subscription", "action", "status"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["topic"], row["id"], row["action"], str(row["status"]))
    console.print(table)


@backfill_app.callback(invoke_without_command=True)
def backfill(ctx: typer.Context, tenant: str = typer.Option(None, "--tenant", help="Tenant id."),
             since: str = typer.Option(None, "--since", help="Date or date-time (UTC if no offset)."),
             page_size: int = typer.Option(100, "--page-size", min=1, max=1000)) -> None:
    """Page DocumentReferences by _lastUpdated, publish each version once; resumes from its checkpoint.
    `vigil backfill run` reads a batch source instead; `vigil backfill status` lists the runs."""
    from services.ingest import backfill as job
    from services.ingest.runtime import runtime

    if ctx.invoked_subcommand is not None:
        return
    if not tenant or not since:
        _fail("--tenant and --since are required (or a subcommand: vigil backfill run | status | export)", 2)
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        _fail(str(exc), 2)
    cfg = _tenant(settings, tenant)
    start = parse_since(since)

    async def go():
        async with runtime(settings, Registry(settings.tenants_file, [cfg])) as rt:
            ehr = await rt.directory(cfg.id)
            total = await job.count(ehr, start)
            columns = [TextColumn("[bold]backfill[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("published {task.fields[published]}"), TimeElapsedColumn()]
            with Progress(*columns, console=console) as progress:
                task = progress.add_task(cfg.id, total=total, published=0)

                def on_page(seen: int, published: int) -> None:
                    progress.update(task, advance=seen, published=progress.tasks[task].fields["published"] + published)
                return await job.run(cfg.id, start, ehr, rt.pools, rt.publishers, page_size=page_size,
                                     on_page=on_page)
    try:
        report = asyncio.run(go())
    except (VigilError, OSError) as exc:
        _fail(f"backfill of {cfg.id} stopped ({exc}); run the same command again to resume")
    console.print(f"{report.job}: {report.seen} seen, {report.published} published, "
                  f"{report.skipped} already published{' (resumed)' if report.resumed else ''}")


backfill_app.command("export")(export_cli.export)
from services.ingest.batch import cli as batch_cli  # noqa: E402  (its commands join `vigil backfill`)

batch_cli.register(backfill_app)
