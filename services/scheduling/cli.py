"""`vigil conversations show --tenant T --patient P [--json] [--reveal-messages]`.

Prints a scheduling conversation's state from Redis (decrypted with the tenant's key): status,
stage, offered times, the held slot, the verified appointment, failed turns and the ids of its
Communications. The message history is PHI: printed only with ``--reveal-messages``, and that
read is appended to the tenant's audit chain.
"""
from __future__ import annotations

import asyncio
import json
from dataclasses import asdict

import typer

from services.core import audit, crypto
from services.core.audit import cli_actor as actor
from services.core.config import ConfigError, Settings
from services.core.crypto import Keyring
from services.core.db import create_pool, ensure_schema
from services.core.errors import VigilError
from services.core.secrets import SecretSettings
from services.core.tenancy import TenantError, check_tenant_id
from services.core.tenantdb import TenantPools
from services.scheduling.state import ConversationStore

app = typer.Typer(help="Scheduling conversations: show one patient's thread.", no_args_is_help=True)


async def _show(settings: Settings, tenant: str, patient: str, reveal: bool) -> dict | None:
    admin = await create_pool(settings, min_size=1, max_size=1)
    try:
        await ensure_schema(admin, crypto.SCHEMA_MODULE, crypto.SCHEMA_STEPS)
        await ensure_schema(admin, audit.SCHEMA_MODULE, audit.SCHEMA_STEPS)
    finally:
        await admin.close()
    secrets = SecretSettings.from_env()
    pools = TenantPools(settings, secrets)
    store = ConversationStore(settings, Keyring(pools, secrets), secrets)
    try:
        conversation = await store.load(tenant, patient)
        if conversation is None:
            return None
        data = asdict(conversation)
        data.pop("seen")
        if reveal:
            async with pools.tx(tenant) as conn:
                await audit.append(conn, tenant, actor(), "conversation.history_read",
                                   [f"vigil:conversation/{conversation.id}"])
        else:
            data["history"] = f"<{len(conversation.history)} messages; --reveal-messages to print>"
        return data
    finally:
        await store.close()
        await pools.close()


@app.command()
def show(tenant: str = typer.Option(..., "--tenant"), patient: str = typer.Option(..., "--patient"),
         as_json: bool = typer.Option(False, "--json"),
         reveal: bool = typer.Option(False, "--reveal-messages", help="Print the message history (audited).")) -> None:
    """Show the patient's scheduling conversation."""
    try:
        check_tenant_id(tenant)
        settings = Settings.from_env()
    except (ConfigError, TenantError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    try:
        data = asyncio.run(_show(settings, tenant, patient, reveal))
    except VigilError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1)
    if data is None:
        typer.echo(f"no conversation for patient {patient} in tenant {tenant}", err=True)
        raise typer.Exit(1)
    if as_json:
        typer.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    for key in ("id", "patient", "status", "stage", "turn", "failed", "appointment", "selected", "offers",
                "messages", "context", "history"):
        typer.echo(f"{key:12} {json.dumps(data[key]) if not isinstance(data[key], str) else data[key]}")
