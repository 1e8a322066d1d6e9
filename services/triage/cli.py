"""`vigil decisions show | rerun`: read the decision ledger and replay past inputs.

    vigil decisions show <id> --tenant T [--json] [--reveal-quote]
    vigil decisions rerun --tenant T --since 2026-03-01 [--engine rules] [--json]

`rerun` calls tools and inference over gRPC (VIGIL_GRPC_TOOLS_ADDR, VIGIL_GRPC_INFERENCE_ADDR)
with the triage service credential. The evidence quote is PHI: `show` prints it only with
`--reveal-quote`, and that read is appended to the tenant's audit chain.
"""
from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone

import typer

from services.core import audit
from services.core.agentclients import AgentClients
from services.core.audit import cli_actor as actor
from services.core.config import ConfigError, Settings
from services.core.crypto import Keyring
from services.core.db import create_pool
from services.core.errors import VigilError
from services.core.grpc.settings import GrpcSettings
from services.core.secrets import SecretSettings
from services.core.tenancy import Registry, TenantError, check_tenant_id
from services.core.tenantdb import TenantPools
from services.triage import ledger as decisions
from services.triage.handler import AGENT
from services.triage.policy import TriageSettings
from services.triage.rerun import rerun as rerun_decisions

app = typer.Typer(help="The decision ledger: show a decision, re-run past inputs.", no_args_is_help=True)


def _settings(tenant: str) -> Settings:
    try:
        check_tenant_id(tenant)
        return Settings.from_env()
    except (ConfigError, TenantError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)


async def _ledger(settings: Settings):
    admin = await create_pool(settings, min_size=1, max_size=1)
    try:
        await decisions.ensure_schema(admin)
    finally:
        await admin.close()
    pools = TenantPools(settings, SecretSettings.from_env())
    return pools, decisions.DecisionLedger(pools, Keyring(pools, pools.secrets))


def _jsonable(row: dict) -> dict:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}


@app.command()
def show(decision_id: str, tenant: str = typer.Option(..., "--tenant"), as_json: bool = typer.Option(False, "--json"),
         reveal_quote: bool = typer.Option(False, "--reveal-quote", help="Decrypt the evidence quote (audited).")
         ) -> None:
    """One decision: inputs and hashes, engine, output, what was written, the clinician's action."""
    settings = _settings(tenant)

    async def go():
        pools, ledger = await _ledger(settings)
        try:
            row = await ledger.get(tenant, decision_id, reveal_quote=reveal_quote)
            if reveal_quote:
                async with pools.tx(tenant) as conn:
                    await audit.append(conn, tenant, actor(), "decision.quote_read", [f"vigil:decision/{decision_id}"])
            return row
        finally:
            await pools.close()

    try:
        row = _jsonable(asyncio.run(go()))
    except VigilError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1)
    if as_json:
        print(json.dumps(row, default=str))
        return
    typer.echo(f"decision {row['id']} ({row['agent']}, {row['time']})")
    typer.echo(f"  patient {row['patient']}  document {row['document_id']}/_history/{row['document_version']}  "
               f"note sha256 {row['note_sha256']}")
    typer.echo(f"  engine {row['engine']} {row['engine_version']}  prompt {row['prompt_hash']}  "
               f"findings event {row['findings_event_id']}")
    typer.echo(f"  {row['kind']} {row['category']} grade {row['grade']}  episode {row['episode_key']} "
               f"({row['episode_action']})  mode {row['mode']} write={row['write']}  confidence {row['confidence']}"
               + (f"  SUPPRESSED ({row['suppressed']})" if row["suppressed"] else ""))
    if reveal_quote:
        typer.echo(f"  quote: {row['quote']!r}")
    typer.echo(f"  written: {', '.join(row['written_refs']) or '-'}  "
               f"clinician: {row['clinician_action'] or '-'} {row['action_reason'] or ''}")


def _since(raw: str) -> datetime:
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        typer.echo(f"error: --since {raw!r}: expected a date (YYYY-MM-DD) or ISO date-time", err=True)
        raise typer.Exit(2)
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


@app.command()
def rerun(tenant: str = typer.Option(..., "--tenant"), since: str = typer.Option(..., "--since"),
          engine: str = typer.Option("", "--engine", help="rules | llm | hybrid (default: the tenant's)."),
          as_json: bool = typer.Option(False, "--json")) -> None:
    """Re-run past inputs with the current engine; print what would change (nothing is written)."""
    settings = _settings(tenant)
    when = _since(since)
    if engine not in ("", "rules", "llm", "hybrid"):
        typer.echo(f"error: --engine {engine!r}: expected rules, llm or hybrid", err=True)
        raise typer.Exit(2)
    try:
        registry = Registry.load(settings.tenants_file)
        triage_settings = TriageSettings.from_tenant(registry.get(tenant))
        grpc_settings = GrpcSettings.from_env()
    except (ConfigError, TenantError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)

    async def go():
        pools, ledger = await _ledger(settings)
        clients = AgentClients(grpc_settings, sub=AGENT)
        try:
            return await rerun_decisions(ledger, clients, tenant, when, triage_settings, engine)
        finally:
            await clients.close()
            await pools.close()

    report = asyncio.run(go())
    if as_json:
        print(json.dumps({"summary": report.summary, "errors": report.errors, "changes": [
            {"decisionId": c.decision_id, "document": c.document, "status": c.status, "old": c.old, "new": c.new,
             "noteChanged": c.note_changed} for c in report.changes]}))
    else:
        def fmt(side):
            return f"{side['category']} g{side['grade']} {side['kind']}" if side else "-"
        for c in report.changes:
            typer.echo(f"{c.status:9} {c.decision_id or '(new)':36} {c.document}  {fmt(c.old)} -> {fmt(c.new)}"
                       + ("  [note text changed]" if c.note_changed else ""))
        for e in report.errors:
            typer.echo(f"error     {e['document']}: {e['error']} {e['code']}")
        typer.echo("summary: " + ", ".join(f"{k} {v}" for k, v in report.summary.items()))
    if report.errors:
        raise typer.Exit(1)
