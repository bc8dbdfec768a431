"""``autodidact plugins``: what the plugin manager found (built-ins and entry points).

What it is: a listing of registered stages (kind, name, plugin, version), as a table or JSON.
What it is not: a package manager; install plugins with pip.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Inspect plugins and the stages they register.", no_args_is_help=True)


@app.command("list")
def list_(as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """List every registered stage: kind, name, plugin and version."""
    from engine.cli.app import user_errors
    from engine.manager import create_plugin_manager

    with user_errors():
        pm = create_plugin_manager()
        rows = [{"kind": s.kind, "name": s.name, "plugin": s.plugin, "version": s.version}
                for s in pm.all_stages()]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table("kind", "name", "plugin", "version")
    for row in rows:
        table.add_row(row["kind"], row["name"], row["plugin"], row["version"])
    Console().print(table)
