"""``autodidact plugins``: what the plugin manager found (built-ins and entry points).

What it is: ``list`` (every registered stage: kind, name, distribution, version, plugin) and
``show`` (one stage: what it accepts and produces, its resources and its options table), as
rich tables or JSON; plus the option-table rendering that ``loops show`` reuses. What it is not:
a package manager (install plugins with pip), nor the introspection itself (engine/cli/describe.py).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from engine.manager import PluginManager, StageInfo

app = typer.Typer(help="Inspect plugins and the stages they register.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]


@app.command("list")
def list_(as_json: JsonOpt = False) -> None:
    """List every registered stage: kind, name, distribution (the pip package), version and
    plugin (its entry-point or module name)."""
    from engine.cli.app import user_errors
    from engine.manager import create_plugin_manager

    with user_errors():
        pm = create_plugin_manager()
        rows = [{"kind": s.kind, "name": s.name, "plugin": s.plugin, "distribution": s.distribution,
                 "version": s.version} for s in pm.all_stages()]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table()
    for column in ("kind", "name", "distribution", "version"):
        table.add_column(column, no_wrap=True)
    table.add_column("plugin", overflow="fold")
    for row in rows:
        table.add_row(*(escape(row[c]) for c in ("kind", "name", "distribution", "version", "plugin")))
    Console().print(table)


@app.command()
def show(name: Annotated[str, typer.Argument(help="a stage name, e.g. llm-judge", show_default=False)],
         as_json: JsonOpt = False,
         kind: Annotated[str | None, typer.Option(
             "--kind", help="the stage kind, where NAME is registered under several")] = None) -> None:
    """Show one stage: kind, plugin, version, record kinds accepted and produced, resources, and
    its options (nested ones as dotted paths) with type, default, limits and description."""
    from engine.cli.app import user_errors
    from engine.cli.describe import print_header, stage_facts
    from engine.manager import create_plugin_manager

    with user_errors():
        facts = stage_facts(find_stage(create_plugin_manager(), name, kind))
    if as_json:
        typer.echo(json.dumps(facts, indent=2))
        return
    console = Console(highlight=False)
    print_header(console, facts, facts["kind"])
    console.print(f"accepts {kinds_text(facts['accepts'])}, produces {kinds_text(facts['produces'])}")
    console.print("resources: " + ", ".join(f"{k}={v}" for k, v in facts["resources"].items()))
    if facts["kind"] == "loop":
        console.print(f"roles: autodidact loops show {escape(facts['name'])}")
    console.print(options_table(facts["options"], "options"))


def find_stage(pm: PluginManager, name: str, kind: str | None) -> StageInfo:
    """The stage ``name`` (of ``kind`` when given); a UserError naming close names when unknown,
    or asking for ``--kind`` when the name is registered under several kinds."""
    from engine.contracts import KINDS
    from engine.errors import UserError
    from engine.manager import unknown_name_message

    if kind is not None:
        if kind not in KINDS:
            raise UserError(unknown_name_message("stage kind", kind, list(KINDS)))
        try:
            return pm.stage(kind, name)
        except KeyError as exc:
            raise UserError(str(exc.args[0])) from None
    stages = pm.all_stages()
    found = [s for s in stages if s.name == name]
    if not found:
        raise UserError(unknown_name_message("stage", name, sorted({s.name for s in stages})))
    if len(found) > 1:
        kinds = ", ".join(s.kind for s in found)
        raise UserError(f"stage {name!r} is registered as several kinds ({kinds}); pick one with --kind")
    return found[0]


def kinds_text(kinds: list[str]) -> str:
    return "any record kind" if "*" in kinds else escape("[" + ", ".join(kinds) + "]")


def value_text(value: Any) -> str:
    """A default as it is written in a YAML config (``null``, ``true``, ``"policy"``, ``0.7``)."""
    return escape(json.dumps(value))


def options_table(rows: list[dict[str, Any]], title: str) -> Table | str:
    """The option rows of :func:`engine.cli.describe.option_rows` as a table."""
    if not rows:
        return f"{title}: none"
    table = Table(title=title, title_justify="left")
    table.add_column("name", no_wrap=True)  # a path to type in a config: never cut
    for column in ("type", "default", "limits"):
        table.add_column(column, overflow="fold")
    table.add_column("description", ratio=1)
    for row in rows:
        table.add_row(escape(row["name"]), escape(row["type"]),
                      "[italic]required[/italic]" if row["required"] else value_text(row["default"]),
                      escape(row["limits"]), escape(row["description"]))
    return table
