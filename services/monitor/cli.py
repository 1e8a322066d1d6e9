"""`vigil gate`, `vigil report` and `vigil monitor drift|rescore`.

Exit status: 0 done (gate passed), 1 the gate refused (or a drift alert was raised), 2 bad input
or settings (message on stderr).
"""
from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone
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


SINCE_HELP = "Start of the period (inclusive): an ISO date (UTC midnight) or date-time."
UNTIL_HELP = "End of the period (exclusive): an ISO date (UTC midnight) or date-time."


def parse_when(value: str | None, option: str) -> datetime | None:
    """An ISO date or date-time as an aware UTC datetime (naive = UTC); a bad value exits 2."""
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        typer.echo(f"error: {option} {value!r}: expected an ISO date (2026-01-31) or date-time "
                   "(2026-01-31T08:00:00Z)", err=True)
        raise typer.Exit(EXIT_BAD_INPUT)
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)


def period_options(since: str | None, until: str | None) -> tuple[datetime | None, datetime | None]:
    start, end = parse_when(since, "--since"), parse_when(until, "--until")
    if start is not None and end is not None and start >= end:
        typer.echo(f"error: --since {since} is not before --until {until}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT)
    return start, end


def _run(coro):
    try:
        return asyncio.run(coro)
    except (VigilError, ConfigError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT)


@gate_app.callback()
def gate(tenant: str = typer.Option(..., "--tenant"),
         to: str = typer.Option(None, "--to", help="pilot | active (default: the next mode)."),
         since: str = typer.Option(None, "--since", help=SINCE_HELP + " Default: the gate window before --until."),
         until: str = typer.Option(None, "--until", help=UNTIL_HELP + " Default: now."),
         as_json: bool = typer.Option(False, "--json")) -> None:
    """Evaluate whether TENANT may move to the next mode; the decision is recorded and audited."""
    from services.core.modes import ModeStore
    from services.monitor import gates

    settings, ms = _settings(tenant)
    start, end = period_options(since, until)

    async def go():
        async with gates.opened(settings) as pools:
            return await gates.evaluate(ms, settings, pools, ModeStore(pools, settings.tenants_file), tenant, to,
                                        actor=cli_actor(), since=start, until=end)

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
def report(tenant: str = typer.Option(..., "--tenant"),
           out: Path = typer.Option(None, "--out", help="Write OUT/index.html and its PNG charts."),
           since: str = typer.Option(None, "--since", help=SINCE_HELP + " Default: the first event counted."),
           until: str = typer.Option(None, "--until", help=UNTIL_HELP + " Default: now."),
           explain: str = typer.Option(None, "--explain", metavar="FIGURE",
                                       help="List the ids behind FIGURE (notes, notes_with_findings, findings, "
                                            "decisions, tasks_written, accepted, overridden, ignored, "
                                            "override_rate, time_to_alert) instead of writing the report."),
           as_json: bool = typer.Option(False, "--json", help="With --explain: JSON; else print the figures.")) -> None:
    """Write OUT/index.html with charts over a period, or explain one figure with the ids behind it."""
    from services.monitor import figures, gates, units
    from services.monitor.report.render import write_report
    from services.monitor.store import MonitorStore

    settings, ms = _settings(tenant)
    start, end = period_options(since, until)
    if explain is not None and explain not in figures.NAMES:
        typer.echo(f"error: --explain {explain!r}: expected one of {', '.join(figures.NAMES)}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT)
    if out is None and explain is None and not as_json:
        typer.echo("error: give --out DIR (the report), --explain FIGURE or --json (the figures)", err=True)
        raise typer.Exit(EXIT_BAD_INPUT)

    async def go():
        async with gates.opened(settings) as pools:
            store = MonitorStore(pools)
            if out is not None:
                return await write_report(store, ms, tenant, out, start, end)
            f = await figures.compute(store, tenant, start, end)
            f.reconciliation = figures.reconcile(f, await figures.ledger_rows(pools, tenant, f.since))
            return f

    got = _run(go())
    if out is not None:
        typer.echo(str(got))
        return
    if explain is None:
        typer.echo(json.dumps(got.as_dict(), default=str))
        return
    figure = got.figures[explain]
    rows = _explain_rows(got, explain)
    if as_json:
        typer.echo(json.dumps({"tenant": tenant, "figure": explain, "value": figure.value, "since": got.since,
                               "until": got.until, "source": figure.source, "ids": rows}, default=str))
        return
    value = units.duration(figure.value) + " (p95)" if explain == "time_to_alert" else \
        units.percent(figure.value) if explain == "override_rate" else str(figure.value)
    typer.echo(f"{explain} = {value}: {tenant}, {units.period(got.since, got.until)}")
    typer.echo(f"source: {figure.source}")
    for row in rows:
        typer.echo("\t".join(str(v) for v in row.values()))


def _explain_rows(f, name: str) -> list[dict]:
    """One row per id behind the figure, with what makes it count."""
    ids = f.figures[name].ids
    if name in ("tasks_written", "accepted", "overridden", "ignored", "override_rate", "time_to_alert"):
        by_id = {t["task_id"]: t for t in f.tasks}
        return [{"task": i, "decision": by_id[i]["decision_id"], "written": by_id[i]["written_time"],
                 "outcome": by_id[i]["action"] or ("ignored" if by_id[i]["ignored_at"] else "open"),
                 **({"reason": by_id[i]["reason"]} if by_id[i]["action"] == "overridden" else {}),
                 **({"tta_seconds": by_id[i]["tta_seconds"]} if name == "time_to_alert" else {})} for i in ids]
    if name == "decisions":
        by_id = {d["decision_id"]: d for d in f.decisions}
        return [{"decision": i, "note": by_id[i]["document"], "category": by_id[i]["category"],
                 "kind": by_id[i]["kind"], "time": by_id[i]["time"]} for i in ids]
    if name == "findings":
        return [{"note": i.split("#")[0], "category": i.split("#")[1]} for i in ids]
    by_doc = {n["document"]: n for n in f.notes}
    return [{"note": i, "findings": by_doc[i]["findings"], "event": by_doc[i]["event_id"], "time": by_doc[i]["time"]}
            for i in ids]


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
