"""`vigil dev up | down | status`: the embedded development stack."""
from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from services.core import devstack
from services.core.config import Settings

app = typer.Typer(help="Start, stop and inspect the embedded dev stack.", no_args_is_help=True)
console = Console(stderr=True)


def _table(rows: list[devstack.Status]) -> Table:
    table = Table(title="Vigil dev stack")
    for column in ("component", "address", "state", "owner", "pid"):
        table.add_column(column)
    colors = {"up": "green", "down": "red", "foreign": "yellow"}
    for row in rows:
        table.add_row(row.component, row.address, f"[{colors[row.state]}]{row.state}[/]",
                      "started by vigil" if row.owner == "vigil" else ("already there" if row.owner == "external" else "-"),
                      str(row.pid or ""))
    for row in rows:
        if row.warning:
            table.add_row(f"[yellow]warning[/]", row.component, f"[yellow]{row.warning}[/]", "", "")
    return table


@app.command()
def up(only: list[str] = typer.Option(None, "--only", help="Start only these components.")) -> None:
    """Start every component whose configured address does not answer."""
    settings = Settings.from_env()
    try:
        rows = devstack.up(settings, only=only, log=lambda m: console.print(f"[dim]{m}[/]"))
    except devstack.DevStackError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2)
    Console().print(_table(rows))


@app.command()
def down() -> None:
    """Stop what `vigil dev up` started (and nothing else)."""
    settings = Settings.from_env()
    devstack.down(settings, log=lambda m: console.print(f"[dim]{m}[/]"))
    Console().print(_table(devstack.status(settings)))


@app.command()
def status(as_json: bool = typer.Option(False, "--json", help="One JSON object: component -> address, state.")) -> None:
    """What runs where, and whether Vigil started it."""
    settings = Settings.from_env()
    rows = devstack.status(settings)
    if as_json:
        print(json.dumps({r.component: r.as_dict() for r in rows}, sort_keys=True))
    else:
        Console().print(_table(rows))
