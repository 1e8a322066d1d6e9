"""`vigil audit verify | checkpoint | tail`: the signed, hash-chained audit log."""
from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import typer

from services.commands.security import admin_pool
from services.core import audit, audit_checkpoints
from services.core.config import ConfigError, Settings
from services.core.tenancy import TenantError

app = typer.Typer(help="The append-only, signed, hash-chained audit log.", no_args_is_help=True)
CHECKPOINT_DIR = typer.Option(None, "--checkpoint-dir",
                              help="Directory of signed checkpoints (default: VIGIL_AUDIT_CHECKPOINT_DIR).")


def _checkpoint_dir(given: Path | None) -> Path | None:
    if given is not None:
        return given
    try:
        return audit_checkpoints.CheckpointSettings.from_env().directory
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)


async def _verify(settings: Settings, tenant: str | None,
                  checkpoint: audit_checkpoints.Checkpoint | None) -> audit.VerifyResult:
    async with admin_pool(settings) as pool, pool.acquire() as conn:
        return await audit.verify(conn, tenant, checkpoint=checkpoint.chains if checkpoint else None)


async def _export(settings: Settings, directory: Path) -> Path:
    async with admin_pool(settings) as pool, pool.acquire() as conn:
        return await audit_checkpoints.export(conn, directory)


async def _tail(settings: Settings, tenant: str | None, limit: int) -> list[audit.AuditRecord]:
    async with admin_pool(settings) as pool, pool.acquire() as conn:
        return await audit.tail(conn, tenant, limit)


@app.command()
def verify(tenant: str = typer.Option(None, "--tenant", help="Only this tenant's chain (default: all)."),
           checkpoint_dir: Path = CHECKPOINT_DIR) -> None:
    """Check links, hashes and signatures, and the chains against the latest signed checkpoint;
    exit 1 naming the first record that was altered, removed, moved or forged."""
    settings = _settings()
    directory = _checkpoint_dir(checkpoint_dir)
    try:
        checkpoint = audit_checkpoints.latest(directory) if directory else None
    except audit.AuditError as exc:
        typer.echo(f"TAMPERED: {exc}", err=True)
        raise typer.Exit(1)
    try:
        result = asyncio.run(_verify(settings, tenant, checkpoint))
    except TenantError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    if not result.ok:
        bad = result.first_bad
        where = f"record seq={bad['seq']}" if bad["seq"] is not None else "chain"
        typer.echo(f"TAMPERED: {where} (tenant {bad['tenant']}, chain_seq {bad['chain_seq']}): "
                   f"{bad['problem']}; {result.records} records before it verified", err=True)
        raise typer.Exit(1)
    if checkpoint is None:
        typer.echo("warning: no checkpoint (set VIGIL_AUDIT_CHECKPOINT_DIR and run `vigil audit checkpoint`): "
                   "removal of a chain's newest records cannot be detected", err=True)
    else:
        typer.echo(f"checkpoint {checkpoint.path.name} ({checkpoint.time}): signature ok, chains reach its heads")
    if result.unsigned:
        typer.echo(f"note: {result.unsigned} record(s) written before signing, covered by the hash chain only",
                   err=True)
    typer.echo(f"ok: {result.records} records in {len(result.chains)} chain(s) verified")
    for chain, (last, head) in sorted(result.chains.items()):
        typer.echo(f"  {chain}: {last} records, head {head}")


@app.command()
def checkpoint(checkpoint_dir: Path = CHECKPOINT_DIR,
               every: float = typer.Option(None, "--every", min=1, help="Keep exporting every N seconds.")) -> None:
    """Verify the chains and export a signed checkpoint of their heads (atomically, to the directory)."""
    settings = _settings()
    directory = _checkpoint_dir(checkpoint_dir)
    if directory is None:
        typer.echo("error: set VIGIL_AUDIT_CHECKPOINT_DIR or --checkpoint-dir", err=True)
        raise typer.Exit(2)
    while True:
        try:
            path = asyncio.run(_export(settings, directory))
        except audit.AuditError as exc:
            typer.echo(f"TAMPERED: {exc}", err=True)
            raise typer.Exit(1)
        except OSError as exc:
            typer.echo(f"error: cannot write to {directory}: {exc.strerror}", err=True)
            raise typer.Exit(1)
        typer.echo(f"checkpoint {path}")
        if every is None:
            return
        time.sleep(every)


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
