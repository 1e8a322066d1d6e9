"""`vigil mode get | set | pilot` and `vigil kill`: tenant and agent modes, pilot list, kill switches.

Every command is a call to the control service (VIGIL_GRPC_CONTROL_ADDR), which alone writes the
modes table (``services.control.modes``), with an operator credential: ``--token`` or
VIGIL_OPERATOR_TOKEN (``vigil token issue``); an operator acts on its own tenant, a platform admin
on the tenant it names. The control service audits every change, and the running stages obey it
within about a second. `mode set` is checked against the monitor's promotion gates, which the
control service runs for a promotion; `--force --reason ...` overrides a refusal (audited).

Exit codes: 0 ok; 1 refused (a promotion the gates hold back) or the control service unreachable;
2 usage or authorization error (bad option, missing or invalid token, another tenant).
"""
from __future__ import annotations

import json

import typer

from services.control.cli import TOKEN, call_control
from services.core.modes import TENANT_WIDE
from services.core.tenancy import MODES, TenantError, check_tenant_id
from vigil.v1 import control_pb2 as pb

mode_app = typer.Typer(help="Tenant and agent modes (silent | pilot | active), through the control service.",
                       no_args_is_help=True)
kill_app = typer.Typer(help="Kill switch of a tenant or one of its agents (stops writes within seconds).")
TENANT = typer.Option(..., "--tenant", help="The tenant (an operator token acts on its own tenant only).")
AGENT = typer.Option(None, "--agent", help="One agent (triage, writeback, ...); default: the whole tenant.")


def _tenant(tenant: str) -> str:
    try:
        return check_tenant_id(tenant)
    except TenantError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)


def _print(state: pb.ModeState, as_json: bool) -> None:
    agent = state.agent or TENANT_WIDE
    if as_json:
        print(json.dumps({"tenant": state.tenant, "agent": agent, "mode": state.mode, "source": state.source,
                          "killed": state.killed, "pilot_practitioners": list(state.pilot_practitioners)}))
        return
    who = state.tenant if agent == TENANT_WIDE else f"{state.tenant}/{agent}"
    pilot = f", pilot: {', '.join(state.pilot_practitioners)}" if state.pilot_practitioners else ""
    typer.echo(f"{who}: {state.mode} (from {state.source}){' KILLED' if state.killed else ''}{pilot}")


@mode_app.command("get")
def get(tenant: str = TENANT, agent: str = AGENT, as_json: bool = typer.Option(False, "--json"),
        token: str = TOKEN) -> None:
    """The effective mode (and kill switch) of a tenant or one agent."""
    request = pb.GetModeRequest(tenant=_tenant(tenant), agent=agent or "")
    _print(call_control(lambda c: c.call("GetMode", request), token), as_json)


@mode_app.command("set")
def set_(mode: str = typer.Argument(..., help=f"One of {', '.join(MODES)}."), tenant: str = TENANT,
         agent: str = AGENT,
         pilot: list[str] = typer.Option(None, "--pilot", help="Practitioner/<id> allowed in pilot (repeat)."),
         force: bool = typer.Option(False, "--force", help="Override a refused promotion (needs --reason)."),
         reason: str = typer.Option("", "--reason"), as_json: bool = typer.Option(False, "--json"),
         token: str = TOKEN) -> None:
    """Set the mode of a tenant or one agent; promotions are checked, demotions are immediate."""
    if mode not in MODES:
        typer.echo(f"error: mode {mode!r} is not one of {', '.join(MODES)}", err=True)
        raise typer.Exit(2)
    if force and not reason:
        typer.echo("error: --force needs --reason (the override is audited)", err=True)
        raise typer.Exit(2)
    request = pb.SetModeRequest(tenant=_tenant(tenant), agent=agent or "", mode=mode, reason=reason, force=force,
                                pilot_practitioners=list(pilot or ()))
    _print(call_control(lambda c: c.call("SetMode", request), token), as_json)


@mode_app.command("pilot")
def pilot_(practitioners: list[str] = typer.Argument(None, help="Practitioner/<id> (repeat); none clears the list."),
           tenant: str = TENANT, agent: str = AGENT, reason: str = typer.Option("", "--reason"),
           as_json: bool = typer.Option(False, "--json"), token: str = TOKEN) -> None:
    """Replace the pilot list of a tenant or one agent (the mode is unchanged)."""
    request = pb.SetPilotRequest(tenant=_tenant(tenant), agent=agent or "", practitioners=list(practitioners or ()),
                                 reason=reason)
    _print(call_control(lambda c: c.call("SetPilot", request), token), as_json)


@kill_app.callback(invoke_without_command=True)
def kill(tenant: str = TENANT, agent: str = AGENT,
         off: bool = typer.Option(False, "--off", help="Turn the switch off again."),
         reason: str = typer.Option("", "--reason"), as_json: bool = typer.Option(False, "--json"),
         token: str = TOKEN) -> None:
    """Turn the kill switch of a tenant (or one agent) on, or off with --off."""
    request = pb.KillRequest(tenant=_tenant(tenant), agent=agent or "", on=not off, reason=reason)
    _print(call_control(lambda c: c.call("Kill", request), token), as_json)
