"""`vigil keys rotate | list`: tenant data keys for PHI at rest."""
from __future__ import annotations

import asyncio
import json

import typer

from services.commands.security import admin_pool, keyring
from services.core.config import ConfigError, Settings
from services.core.errors import VigilError
from services.core.secrets import SecretSettings
from services.core.tenancy import TenantError, check_tenant_id

app = typer.Typer(help="Tenant data keys (envelope encryption of PHI at rest).", no_args_is_help=True)


def _load(tenant: str) -> tuple[Settings, SecretSettings]:
    try:
        check_tenant_id(tenant)
        return Settings.from_env(), SecretSettings.from_env()
    except (ConfigError, TenantError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)


async def _rotate(settings: Settings, secrets: SecretSettings, tenant: str) -> int:
    async with admin_pool(settings), keyring(settings, secrets) as ring:
        return await ring.rotate(tenant)


async def _list(settings: Settings, secrets: SecretSettings, tenant: str) -> list[dict]:
    async with admin_pool(settings), keyring(settings, secrets) as ring:
        return await ring.keys(tenant)


@app.command()
def rotate(tenant: str = typer.Option(..., "--tenant", help="The tenant whose data key to rotate.")) -> None:
    """Make a new active data key; older keys keep decrypting existing data."""
    settings, secrets = _load(tenant)
    try:
        key_id = asyncio.run(_rotate(settings, secrets, tenant))
    except VigilError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1)
    typer.echo(f"tenant {tenant}: active data key is now {key_id}")


@app.command("list")
def list_(tenant: str = typer.Option(..., "--tenant"), as_json: bool = typer.Option(False, "--json")) -> None:
    """The tenant's data keys (ids, dates, active flag; never key material)."""
    settings, secrets = _load(tenant)
    try:
        keys = asyncio.run(_list(settings, secrets, tenant))
    except VigilError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1)
    rows = [{"key_id": k["key_id"], "active": k["active"], "created_at": k["created_at"].isoformat(),
             "kek_id": k["kek_id"]} for k in keys]
    if as_json:
        typer.echo(json.dumps(rows))
    else:
        for r in rows:
            typer.echo(f"{r['key_id']:>4}  {'active' if r['active'] else 'retired':8} {r['created_at']}  kek {r['kek_id']}")
