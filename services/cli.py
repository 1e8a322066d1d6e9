"""The `vigil` command: one explicit table of command groups."""
from __future__ import annotations

import typer

from services.commands import audit, crawl, dev, keys, modes, notify, security, serve, tenant
from services.commands import demo as demo_command
from services.control import cli as control_cli
from services.core import devstack
from services.ehr import cli as ehr_cli
from services.inference import cli as inference_cli
from services.ingest import cli as ingest_cli
from services.ingest import hl7_cli
from services.ingest import poll_cli
from services.monitor import cli as monitor_cli
from services.scheduling import cli as scheduling_cli
from services.triage import cli as triage_cli

app = typer.Typer(help="Vigil: clinical AI agents in production.", no_args_is_help=True,
                  pretty_exceptions_enable=False)

#: name -> sub-application. Every command group is listed here and nowhere else.
GROUPS: list[tuple[str, typer.Typer]] = [
    ("dev", dev.app),
    ("tenant", tenant.app),
    ("keys", keys.app),
    ("audit", audit.app),
    ("ehr", ehr_cli.app),
    ("eval", inference_cli.app),
    ("serve", serve.app),
    ("mode", modes.mode_app),
    ("kill", modes.kill_app),
    ("decisions", triage_cli.app),
    ("subscribe", ingest_cli.subscribe_app),
    ("notify-key", notify.app),
    ("backfill", ingest_cli.backfill_app),
    ("hl7", hl7_cli.app),
    ("poll", poll_cli.app),
    ("gate", monitor_cli.gate_app),
    ("report", monitor_cli.report_app),
    ("monitor", monitor_cli.monitor_app),
    ("dlq", control_cli.dlq_app),
    ("token", control_cli.token_app),
    ("conversations", scheduling_cli.app),
    ("crawl", crawl.app),
]

devstack.register(ehr_cli.DEVSTACK_COMPONENT)  # `vigil dev up` starts the EHR sandbox
security.register_onboarding()  # PostgreSQL role, Redis ACL user, data key for `vigil tenant add`

for _name, _group in GROUPS:
    app.add_typer(_group, name=_name)


@app.command()
def demo(keep: bool = typer.Option(False, "--keep", help="Stay up until Ctrl-C (inbox and console usable)."),
         notes: int = typer.Option(12, "--notes", min=1, max=500, help="Notes per tenant.")) -> None:
    """Run the whole pipeline on the embedded stack for two tenants and print a summary."""
    demo_command.run(keep=keep, notes=notes)


def main() -> None:
    from services.core.config import ConfigError, Settings
    from services.core.logging import configure

    try:
        configure(Settings.from_env().log_level)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(2)
    app()


if __name__ == "__main__":
    main()
