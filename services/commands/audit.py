"""`vigil audit verify | tail`: the hash-chained audit log."""
from __future__ import annotations

import asyncio
import json

import typer

from services.commands.security import admin_pool
from services.core import audit
from services.core.config import ConfigError, Settings
from services.core.tenancy import TenantError

app = typer.Typer(help="The append-only, hash-chained audit log.", no_args_is_help=True)


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)


async def _verify(settings: Settings, tenant: str | None) -> audit.VerifyResult:
    async with admin_pool(settings) as pool, pool.acquire() as conn:
        return await audit.verify(conn, tenant)


async def _tail(settings: Settings, tenant: str | None, limit: int) -> list[audit.AuditRecord]:
    async with admin_pool(settings) as pool, pool.acquire() as conn:
        return await audit.tail(conn, tenant, limit)


@app.command()
def verify(tenant: str = typer.Option(None, "--tenant", help="Only this tenant's chain (default: all).")) -> None:
    """Walk the chain(s); exit 1 naming the first record that was altered, removed or inserted."""
    settings = _settings()
    try:
        result = asyncio.run(_verify(settings, tenant))
    except TenantError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    if not result.ok:
        bad = result.first_bad
        typer.echo(f"TAMPERED: record seq={bad['seq']} (tenant {bad['tenant']}, chain_seq {bad['chain_seq']}): "
                   f"{bad['problem']}; {result.records} records before it verified", err=True)
        raise typer.Exit(1)
    typer.echo(f"ok: {result.records} records in {len(result.chains)} chain(s) verified")
    for chain, (last, head) in sorted(result.chains.items()):
        typer.echo(f"  {chain}: {last} records, head {head}")


@app.command()
def tail(tenant: str = typer.Option(None, "--tenant"), n: int = typer.Option(20, "-n", min=1, max=1000),
         as_json: bool = typer.Option(False, "--json")) -> None:
    """The newest records, oldest first."""
    settings = _settings()
    try:
        records = asyncio.run(_tail(settings, tenant, n))
    except TenantError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    for r in records:
        if as_json:
            typer.echo(json.dumps({"seq": r.seq, "chain_seq": r.chain_seq, "time": r.time.isoformat(),
                                   "tenant": r.tenant, "actor": r.actor, "action": r.action,
                                   "resources": json.loads(r.resources), "details": json.loads(r.details),
                                   "hash": r.hash}))
        else:
            typer.echo(f"{r.seq:>8} {r.time.isoformat()} {r.tenant} #{r.chain_seq} {r.actor} {r.action} "
                       f"{r.resources} {r.details} {r.hash[:12]}")
