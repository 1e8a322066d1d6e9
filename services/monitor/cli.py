"""`vigil gate`, `vigil report` and `vigil monitor drift|rescore`.

Exit status: 0 done (gate passed), 1 the gate refused (or a drift alert was raised), 2 bad input
or settings (message on stderr).
"""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

import typer

from services.core.audit import cli_actor
from services.core.config import ConfigError, Settings
from services.core.errors import VigilError
from services.core.tenancy import TenantError, check_tenant_id

gate_app = typer.Typer(help="Evaluate and record a tenant's promotion gate (silent -> pilot -> active).",
                       no_args_is_help=True, invoke_without_command=True)
report_app = typer.Typer(help="Write the monitor report (HTML + PNG plots) for a tenant.", no_args_is_help=True,
                         invoke_without_command=True)
monitor_app = typer.Typer(help="Run the monitor's drift checks by hand.", no_args_is_help=True)

EXIT_REFUSED = 1
EXIT_BAD_INPUT = 2


def _settings(tenant: str):
    from services.monitor.config import MonitorSettings

    try:
        check_tenant_id(tenant)
        return Settings.from_env(), MonitorSettings.from_env()
    except (ConfigError, TenantError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT)


def _run(coro):
    try:
        return asyncio.run(coro)
    except (VigilError, ConfigError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT)


@gate_app.callback()
def gate(tenant: str = typer.Option(..., "--tenant"),
         to: str = typer.Option(None, "--to", help="pilot | active (default: the next mode)."),
         as_json: bool = typer.Option(False, "--json")) -> None:
    """Evaluate whether TENANT may move to the next mode; the decision is recorded and audited."""
    from services.core.modes import ModeStore
    from services.monitor import gates

    settings, ms = _settings(tenant)

    async def go():
        async with gates.opened(settings) as pools:
            return await gates.evaluate(ms, settings, pools, ModeStore(pools, settings.tenants_file), tenant, to,
                                        actor=cli_actor())

    result = _run(go())
    if as_json:
        typer.echo(json.dumps(result.as_dict(), default=str))
    else:
        typer.echo(f"{tenant}: {result.from_mode} -> {result.to_mode}: {'PASSED' if result.passed else 'REFUSED'} "
                   f"(decision {result.decision_id})")
        for c in result.checks:
            value = "-" if c.value is None else f"{c.value:.3f}"
            typer.echo(f"  [{'ok' if c.passed else 'FAIL'}] {c.name}: {value} (threshold {c.threshold}) {c.detail}")
    if not result.passed:
        raise typer.Exit(EXIT_REFUSED)


@report_app.callback()
def report(tenant: str = typer.Option(..., "--tenant"), out: Path = typer.Option(..., "--out")) -> None:
    """Write OUT/index.html with plots: alerts per day, override rate, time to alert, drift, cost."""
    from services.monitor import gates
    from services.monitor.report.render import write_report
    from services.monitor.store import MonitorStore

    settings, ms = _settings(tenant)

    async def go():
        async with gates.opened(settings) as pools:
            return await write_report(MonitorStore(pools), ms, tenant, out)

    typer.echo(str(_run(go())))


@monitor_app.command("drift")
def drift_command(tenant: str = typer.Option(..., "--tenant"), as_json: bool = typer.Option(False, "--json")) -> None:
    """PSI of category rates, note length and note type: current vs baseline period (alerts raised)."""
    from services.monitor import drift, gates
    from services.monitor.store import MonitorStore

    settings, ms = _settings(tenant)

    async def go():
        async with gates.opened(settings) as pools:
            return await drift.psi_check(MonitorStore(pools), ms, tenant)

    result = _run(go())
    if as_json:
        typer.echo(json.dumps(result))
    for dimension, r in ({} if as_json else result).items():
        value = "-" if r["psi"] is None else f"{r['psi']:.3f}"
        typer.echo(f"{dimension}: PSI {value} (baseline n={r['baseline_n']:.0f}, current n={r['current_n']:.0f})"
                   + (" ALERT" if r["alert"] else ""))
    if not result and not as_json:
        typer.echo("no data")
    if any(r["alert"] for r in result.values()):
        raise typer.Exit(EXIT_REFUSED)


@monitor_app.command("rescore")
def rescore_command(tenant: str = typer.Option(..., "--tenant"),
                    gold: Path = typer.Option(None, "--gold", help="Default: VIGIL_MONITOR_GOLD."),
                    as_json: bool = typer.Option(False, "--json")) -> None:
    """Re-score the gold set with the tenant's live engine; alert when F1 dropped past the threshold."""
    from services.monitor import drift, gates
    from services.monitor.store import MonitorStore

    settings, ms = _settings(tenant)

    async def go():
        async with gates.opened(settings) as pools:
            return await drift.gold_rescore(MonitorStore(pools), ms, settings.tenants_file, tenant, gold=gold)

    result = _run(go())
    if as_json:
        typer.echo(json.dumps(result, default=str))
    else:
        typer.echo(f"F1 {result['score']['f1']:.3f} (baseline {result['baseline']['f1']:.3f}, drop "
                   f"{result['drop']:.3f}){' ALERT' if result['alert'] else ''}")
    if result["alert"]:
        raise typer.Exit(EXIT_REFUSED)
