"""`vigil mode get | set` and `vigil kill`: tenant and agent modes, pilot list, kill switches.

Changes are stored in PostgreSQL (``services.core.modes``), audited, and obeyed by the running
stages within about a second. `mode set` runs the monitor's promotion gates
(``services.monitor.gates.promotion_checks``) for a promotion; `--force --reason ...` overrides a refusal (audited).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
from typing import AsyncIterator

import typer

from services.core import modes
from services.core.audit import cli_actor as actor
from services.core.config import ConfigError, Settings
from services.core.db import create_pool
from services.core.errors import VigilError
from services.core.secrets import SecretSettings
from services.core.tenancy import MODES, TenantError, check_tenant_id
from services.core.tenantdb import TenantPools
from services.monitor import gates

mode_app = typer.Typer(help="Tenant and agent modes (silent | pilot | active).", no_args_is_help=True)
kill_app = typer.Typer(help="Kill switch of a tenant or one of its agents (stops writes within seconds).")


@contextlib.asynccontextmanager
async def store(settings: Settings) -> AsyncIterator[modes.ModeStore]:
    admin = await create_pool(settings, min_size=1, max_size=1)
    try:
        await modes.ensure_schema(admin)
    finally:
        await admin.close()
    pools = TenantPools(settings, SecretSettings.from_env())
    try:
        yield modes.ModeStore(pools, settings.tenants_file, promotion_checks=gates.promotion_checks())
    finally:
        await pools.close()


def _run(tenant: str, work) -> modes.AgentState:
    try:
        check_tenant_id(tenant)
        settings = Settings.from_env()
    except (ConfigError, TenantError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)

    async def go():
        async with store(settings) as s:
            return await work(s)

    try:
        return asyncio.run(go())
    except VigilError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1)


def _print(state: modes.AgentState, as_json: bool) -> None:
    if as_json:
        print(json.dumps(state.as_dict()))
        return
    who = state.tenant if state.agent == modes.TENANT_WIDE else f"{state.tenant}/{state.agent}"
    pilot = f", pilot: {', '.join(state.pilot_practitioners)}" if state.pilot_practitioners else ""
    typer.echo(f"{who}: {state.mode} (from {state.source}){' KILLED' if state.killed else ''}{pilot}")


@mode_app.command("get")
def get(tenant: str = typer.Option(..., "--tenant"), agent: str = typer.Option(None, "--agent"),
        as_json: bool = typer.Option(False, "--json")) -> None:
    """The effective mode (and kill switch) of a tenant or one agent."""
    _print(_run(tenant, lambda s: s.state(tenant, agent, fresh=True)), as_json)


@mode_app.command("set")
def set_(mode: str = typer.Argument(..., help=f"One of {', '.join(MODES)}."),
         tenant: str = typer.Option(..., "--tenant"), agent: str = typer.Option(None, "--agent"),
         pilot: list[str] = typer.Option(None, "--pilot", help="Practitioner/<id> allowed in pilot (repeat)."),
         force: bool = typer.Option(False, "--force", help="Override a refused promotion (needs --reason)."),
         reason: str = typer.Option("", "--reason"), as_json: bool = typer.Option(False, "--json")) -> None:
    """Set the mode of a tenant or one agent; promotions are checked, demotions are immediate."""
    if mode not in MODES:
        typer.echo(f"error: mode {mode!r} is not one of {', '.join(MODES)}", err=True)
        raise typer.Exit(2)
    state = _run(tenant, lambda s: s.set_mode(tenant, mode, agent=agent, actor=actor(), reason=reason, force=force,
                                              pilot_practitioners=list(pilot) if pilot else None))
    _print(state, as_json)


@kill_app.callback(invoke_without_command=True)
def kill(tenant: str = typer.Option(..., "--tenant"), agent: str = typer.Option(None, "--agent"),
         off: bool = typer.Option(False, "--off", help="Turn the switch off again."),
         reason: str = typer.Option("", "--reason"), as_json: bool = typer.Option(False, "--json")) -> None:
    """Turn the kill switch of a tenant (or one agent) on, or off with --off."""
    state = _run(tenant, lambda s: s.kill(tenant, agent, on=not off, actor=actor(), reason=reason))
    _print(state, as_json)
