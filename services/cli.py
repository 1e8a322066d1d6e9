"""The `vigil` command: one explicit table of command groups.

A group's module is imported only when that group runs (``vigil ehr client list`` imports the EHR
commands and nothing else): importing every service's commands costs about a second of CPU, paid
by every invocation of a short command. ``vigil --help`` lists every group (and imports them all).
"""
from __future__ import annotations

import importlib

import click
import typer
from typer.core import TyperGroup

#: name -> "module:attribute" of its sub-application. Every command group is listed here and nowhere else.
GROUPS: list[tuple[str, str]] = [
    ("dev", "services.commands.dev:app"),
    ("tenant", "services.commands.tenant:app"),
    ("keys", "services.commands.keys:app"),
    ("audit", "services.commands.audit:app"),
    ("ehr", "services.ehr.cli:app"),
    ("eval", "services.inference.cli:app"),
    ("serve", "services.commands.serve:app"),
    ("mode", "services.commands.modes:mode_app"),
    ("kill", "services.commands.modes:kill_app"),
    ("decisions", "services.triage.cli:app"),
    ("subscribe", "services.ingest.cli:subscribe_app"),
    ("notify-key", "services.commands.notify:app"),
    ("backfill", "services.ingest.cli:backfill_app"),
    ("hl7", "services.ingest.hl7_cli:app"),
    ("poll", "services.ingest.poll_cli:app"),
    ("gate", "services.monitor.cli:gate_app"),
    ("report", "services.monitor.cli:report_app"),
    ("monitor", "services.monitor.cli:monitor_app"),
    ("dlq", "services.control.cli:dlq_app"),
    ("token", "services.control.cli:token_app"),
    ("conversations", "services.scheduling.cli:app"),
    ("crawl", "services.commands.crawl:app"),
]


def register_devstack() -> None:
    """`vigil dev up` starts the EHR sandbox too."""
    from services.core import devstack
    from services.ehr import cli as ehr_cli

    devstack.register(ehr_cli.DEVSTACK_COMPONENT)


def register_onboarding() -> None:
    """PostgreSQL role, Redis ACL user and data key for `vigil tenant add`."""
    from services.commands import security

    security.register_onboarding()


#: group -> what it needs registered before it runs.
SETUP = {"dev": register_devstack, "tenant": register_onboarding}


def load_group(name: str) -> click.Command:
    """The click group of ``name`` (its module imported now, its set-up run first)."""
    module, attribute = dict(GROUPS)[name].split(":")
    if name in SETUP:
        SETUP[name]()
    group = typer.main.get_group(getattr(importlib.import_module(module), attribute))
    group.name = name
    return group


class LazyGroups(TyperGroup):
    """The top-level group: the commands defined here, then the GROUPS, each loaded on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*super().list_commands(ctx), *(name for name, _ in GROUPS if name not in self.commands)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in dict(GROUPS):
            self.add_command(load_group(cmd_name), cmd_name)
        return super().get_command(ctx, cmd_name)


app = typer.Typer(cls=LazyGroups, help="Vigil: clinical AI agents in production.", no_args_is_help=True,
                  pretty_exceptions_enable=False)


@app.callback()
def root() -> None:
    """A group of commands even while only `demo` is defined here (the GROUPS are added on use)."""


@app.command()
def demo(keep: bool = typer.Option(False, "--keep", help="Stay up until Ctrl-C (inbox and console usable)."),
         notes: int = typer.Option(12, "--notes", min=1, max=500, help="Notes per tenant.")) -> None:
    """Run the whole pipeline on the embedded stack for two tenants and print a summary."""
    from services.commands import demo as demo_command

    register_devstack()
    register_onboarding()
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
