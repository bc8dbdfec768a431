"""``autodidact loops``: the registered loops and what binding a stage to each of their roles takes.

What it is: ``list`` (every loop: roles, trained adapter roles, distribution) and ``show`` (per
role: stage kind, record kinds handed in and expected back, optional or not, the default stage
with its options merged over that stage's defaults, the role's doc; then the loop's own options
and the adapter roles it trains), as rich text or JSON. What it is not: config validation
(``autodidact validate``) or the introspection itself (engine/cli/describe.py).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console, Group
from rich.markup import escape
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from engine.cli.plugins import JsonOpt, kinds_text, options_table, value_text

app = typer.Typer(help="Inspect loops: their roles, default stages, options and trained adapters.",
                  no_args_is_help=True)


@app.command("list")
def list_(as_json: JsonOpt = False) -> None:
    """List every registered loop: its roles, the adapter roles it trains, and where it comes from
    (the JSON also names the plugin module)."""
    from engine.cli.app import user_errors
    from engine.manager import create_plugin_manager

    with user_errors():
        loops = list(create_plugin_manager().stages("loop").values())
    rows: list[dict[str, Any]] = [
        {"name": s.name, "roles": list(getattr(s.cls, "roles", {})),
         "trains": {r: list(k) for r, k in getattr(s.cls, "trains", {}).items()},
         "plugin": s.plugin, "distribution": s.distribution, "version": s.version} for s in loops]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table()
    table.add_column("loop", no_wrap=True)
    table.add_column("roles", ratio=1)
    table.add_column("trains")
    table.add_column("distribution", no_wrap=True)
    table.add_column("version", no_wrap=True)
    for s in loops:
        trains = ", ".join(getattr(s.cls, "trains", {})) or "-"
        table.add_row(escape(s.name), escape(", ".join(getattr(s.cls, "roles", {}))), escape(trains),
                      escape(s.distribution), escape(s.version))
    Console().print(table)


@app.command()
def show(name: Annotated[str, typer.Argument(help="a loop name, e.g. spar", show_default=False)],
         as_json: JsonOpt = False) -> None:
    """Show a loop's roles (stage kind, record kinds in and out, optional, default stage and its
    options, doc), its own options and the adapter roles it trains."""
    from engine.cli.app import user_errors
    from engine.cli.describe import loop_facts, print_header
    from engine.errors import UserError
    from engine.manager import create_plugin_manager

    with user_errors():
        pm = create_plugin_manager()
        try:
            info = pm.stage("loop", name)
        except KeyError as exc:
            raise UserError(str(exc.args[0])) from None
        facts = loop_facts(info, pm)
    if as_json:
        typer.echo(json.dumps(facts, indent=2))
        return
    console = Console(highlight=False)
    print_header(console, facts, "loop")
    console.print("\n[bold]roles[/bold] (bind one in a config: stages.<role>: {name: ..., options: {...}}; "
                  "options in [bold]bold[/bold] are the loop's, the rest the stage's defaults)")
    for role, r in facts["roles"].items():
        console.print(_role_text(role, r))
    console.print()
    console.print(options_table(facts["options"], "loop options (loop.options.*)"))
    console.print("\n[bold]trains[/bold] (trainers.<role>, else trainer): " + (", ".join(
        f"{escape(role)} on {kinds_text(kinds)}" for role, kinds in facts["trains"].items()) or "nothing"))


def _role_text(role: str, r: dict[str, Any]) -> Group:
    """One role as indented lines (long option lists wrap under their own indent)."""
    from engine.cli.describe import flatten

    need = "optional (stages." + escape(role) + ": null skips it)" if r["optional"] else "required"
    lines: list[tuple[int, str]] = [
        (2, f"[cyan]{escape(role)}[/cyan]: {r['kind']}, {need}"),
        (4, f"hands in {kinds_text(r['takes'])}, expects back {kinds_text(r['gives'])}")]
    default = r["default"]
    if default is None:
        lines.append((4, "default: none (the config must name a stage)"))
    else:
        mine = flatten(default["loop_options"])
        opts = ", ".join(f"[bold]{escape(k)}={value_text(v)}[/bold]" if k in mine
                         else f"{escape(k)}={value_text(v)}" for k, v in flatten(default["options"]).items())
        lines.append((4, f"default: [green]{escape(default['name'])}[/green]"))
        if opts:
            lines.append((6, opts))
        if default["problem"]:
            lines.append((6, f"[red]{escape(default['problem'])}[/red]"))
    if r["doc"]:
        lines.append((4, f"[dim]{escape(r['doc'])}[/dim]"))
    return Group(*(Padding(Text.from_markup(text), (0, 0, 0, indent)) for indent, text in lines))
