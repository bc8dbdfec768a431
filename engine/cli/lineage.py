"""``autodidact lineage``: show, tree, funnel, diff, export and read-only SQL over a run's store.

What it is: a Typer sub-app over engine.lineage (store, queries, export, readonly SQL). RUN is a
run directory (holding lineage.sqlite) or a SQLAlchemy URL (then ``--run-id`` picks the run when
the database holds several). Every bad input (unknown id, missing or corrupt store, unreachable
database, a write through ``sql``) prints one line and exits with code 2. What it is not: any
query logic of its own; nothing here writes to the store.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

app = typer.Typer(help="Query the lineage of records: where they came from, what they produced, "
                       "what each stage kept, and export an iteration's data.", no_args_is_help=True)
out = Console()
err = Console(stderr=True)

RunArg = Annotated[str, typer.Argument(help="run directory (with lineage.sqlite) or database URL",
                                       show_default=False)]
RunIdOpt = Annotated[str | None, typer.Option("--run-id", help="run id when the store holds several")]
StoreOpt = Annotated[str, typer.Option("--store", "-s", envvar="AUTODIDACT_LINEAGE",
                                       help="run directory or database URL of the store")]


@contextmanager
def one_line_errors() -> Iterator[None]:
    """User errors and database errors become one line on stderr and exit code 2."""
    from sqlalchemy.exc import SQLAlchemyError

    from engine.errors import UserError
    from engine.lineage.connect import first_line

    try:
        yield
    except UserError as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    except SQLAlchemyError as exc:
        message = f"database error: {first_line(exc)}"
    except OSError as exc:
        message = f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc)
    else:
        return
    err.print(f"error: {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def _open(location: str) -> Any:
    from engine.lineage import LineageStore
    from engine.lineage.connect import resolve_location

    return LineageStore.open(resolve_location(location), create=False)


def _pick_run(store: Any, location: str, run_id: str | None) -> str:
    from engine.lineage.errors import StoreError, UnknownRun

    ids = [r["id"] for r in store.runs()]
    if run_id is not None:
        if run_id not in ids:
            raise UnknownRun(f"unknown run id {run_id!r} in {location}")
        return run_id
    if len(ids) == 1:
        return str(ids[0])
    name = Path(location).name
    if name in ids:
        return name
    if not ids:
        raise StoreError(f"{location}: the store holds no runs")
    raise StoreError(f"{location} holds {len(ids)} runs ({', '.join(ids[:5])}...); pick one with --run-id")


def _cell(value: Any) -> str:
    return "" if value is None else (f"{value:.4g}" if isinstance(value, float) else str(value))


def _table(title: str, rows: list[dict[str, Any]], columns: list[str]) -> Table:
    table = Table(title=title)
    for col in columns:
        table.add_column(col, justify="right" if col.startswith(("n_", "delta", "value", "iter")) else "left")
    for row in rows:
        table.add_row(*(escape(_cell(row.get(c))) for c in columns))
    return table


@app.command()
def show(record_id: Annotated[str, typer.Argument(help="record id, e.g. resp-0123...")],
         store: StoreOpt = ".") -> None:
    """Show one record: kind, maker, model version, parents and payload."""
    from engine.lineage import queries

    with one_line_errors():
        st = _open(store)
        try:
            info = queries.record_info(st, record_id)
            parents = queries.parents_of(st, [record_id])[record_id]
            version = queries.model_version_of(st, record_id)
        finally:
            st.close()
    out.print(f"[bold]{escape(info['kind'])}[/bold] {escape(record_id)}")
    out.print(f"made by {escape(str(info['role']))} ({escape(str(info['stage']))}, plugin "
              f"{escape(str(info['plugin']))}) in run {escape(info['run_id'])} iteration {info['iteration']}")
    out.print(f"model version: {escape(version['id']) if version else '-'}")
    out.print(f"content hash: {info['content_hash']}")
    for link in parents:
        out.print(f"  parent ({escape(link['role'])}): {escape(link['id'])}")
    out.print_json(json.dumps(info["payload"], default=str))


def _clip(text: Any, width: int = 48) -> str:
    flat = " ".join(str(text).split())
    return repr(flat if len(flat) <= width else flat[:width - 3] + "...")


def _summary(rec: Any) -> str:
    """What a tree line says of a record: an episode's turn (action -> reward, observation), a
    decision a stage recorded (round, accepted or rejected, kept or not, the reason, words), and
    the start of its text."""
    if rec.kind == "turn":  # an episode reads turn by turn
        said = getattr(rec, "observation", "") or ""
        return (f"  #{getattr(rec, 'index', '?')} {_clip(getattr(rec, 'action', ''))} -> "
                f"reward {getattr(rec, 'reward', None)}" + (f", {_clip(said)}" if said else "")
                + (f", error: {_clip(rec.error)}" if getattr(rec, "error", None) else ""))
    meta, bits = rec.meta or {}, []
    if "round" in meta:
        bits.append(f"round {meta['round']}: " + ("accepted" if meta.get("accepted") else "rejected"))
    if "kept" in meta:
        bits.append("kept" if meta["kept"] else "not kept")
    if meta.get("reason"):
        bits.append(_clip(meta["reason"], 72))
    if "words" in meta:
        bits.append(f"{meta['words']} words")
    text = getattr(rec, "text", None) or getattr(rec, "prompt", None)
    if isinstance(text, str) and text:
        bits.append(_clip(text, 40))
    return "  " + ", ".join(bits) if bits else ""


@app.command()
def tree(record_id: Annotated[str, typer.Argument(help="record id")],
         up: Annotated[bool, typer.Option("--up/--down", help="ancestors (default) or descendants")] = True,
         depth: Annotated[int | None, typer.Option(help="stop after this many edges")] = None,
         store: StoreOpt = ".") -> None:
    """Draw where a record came from (--up) or what it produced (--down)."""
    from engine.lineage import queries

    with one_line_errors():
        st = _open(store)
        try:
            root_kind = queries.record_info(st, record_id)["kind"]
            rows = (queries.ancestors if up else queries.descendants)(st, record_id, depth)
            ids = [record_id, *(row["id"] for row in rows[:2000] if row["kind"])]
            records = {r.id: r for r in st.get_records(list(dict.fromkeys(ids)))}
        finally:
            st.close()
    below: dict[str, list[dict[str, Any]]] = {}
    seen: set[tuple[str, str, str]] = set()
    for row in rows:
        key = (row["parent"], row["id"], row["role"])
        if key not in seen:
            seen.add(key)
            below.setdefault(row["parent"], []).append(row)
    top = records.get(record_id)
    root = Tree(f"[bold]{escape(root_kind)}[/bold] {escape(record_id)}"
                + escape(_summary(top) if top else ""))
    budget = [2000]

    def grow(node: Tree, rid: str, path: frozenset[str]) -> None:
        for row in below.get(rid, []):
            if budget[0] <= 0:
                node.add("...")
                return
            budget[0] -= 1
            kind = row["kind"] or "(not stored)"
            label = f"[bold]{escape(kind)}[/bold] {escape(row['id'])} [dim]{escape(row['role'])}[/dim]"
            if (rec := records.get(row["id"])) is not None:
                label += escape(_summary(rec))
            child = node.add(label)
            if row["id"] not in path:
                grow(child, row["id"], path | {row["id"]})

    grow(root, record_id, frozenset({record_id}))
    out.print(root)


@app.command()
def funnel(run: RunArg, run_id: RunIdOpt = None) -> None:
    """Records in and out of each stage, per iteration."""
    from engine.lineage import queries

    with one_line_errors():
        st = _open(run)
        try:
            rid = _pick_run(st, run, run_id)
            rows = queries.funnel(st, rid)
        finally:
            st.close()
    out.print(_table(f"funnel of {rid}", rows, ["iteration", "role", "stage", "kind", "n_in", "n_out"]))


@app.command()
def diff(run: RunArg, a: Annotated[int, typer.Argument(help="first iteration")],
         b: Annotated[int, typer.Argument(help="second iteration")], run_id: RunIdOpt = None) -> None:
    """Compare two iterations: funnel counts and metrics."""
    from engine.lineage import queries

    with one_line_errors():
        st = _open(run)
        try:
            found = queries.diff_iterations(st, _pick_run(st, run, run_id), a, b)
        finally:
            st.close()
    out.print(_table(f"funnel: iteration {a} -> {b}", found["funnel"],
                     ["role", "stage", "n_out_a", "n_out_b", "delta_out"]))
    out.print(_table(f"metrics: iteration {a} -> {b}", found["metrics"],
                     ["evaluator", "metric", "value_a", "value_b", "delta"]))


@app.command()
def export(run: RunArg,
           iteration: Annotated[int, typer.Option("--iteration", "-i", help="iteration to export")],
           kind: Annotated[str, typer.Option("--kind", "-k", help="record kind, e.g. training_example")],
           format: Annotated[str, typer.Option("--format", "-f", help="jsonl or parquet")] = "jsonl",
           output: Annotated[Path | None, typer.Option("--output", "-o", help="file to write")] = None,
           run_id: RunIdOpt = None) -> None:
    """Export an iteration's records of a kind (JSONL or Parquet, loadable with HF datasets)."""
    from engine.lineage.errors import StoreError
    from engine.lineage.export import FORMATS
    from engine.lineage.export import export as do_export

    with one_line_errors():
        if format not in FORMATS:
            raise StoreError(f"unknown export format {format!r} (use one of: {', '.join(FORMATS)})")
        st = _open(run)
        try:
            rid = _pick_run(st, run, run_id)
            path = output or Path(f"{rid}-it{iteration}-{kind}.{format}")
            n = do_export(st, rid, iteration, kind, path, format)
        finally:
            st.close()
    out.print(f"wrote {n} {escape(kind)} records of {escape(rid)} iteration {iteration} "
              f"to {escape(str(path))}")


SQL_TIMEOUT_S = 30.0
SQL_MAX_ROWS = 10_000
PIPE_WIDTH = 1_000_000  # a table written to a pipe or file never wraps its cells


@app.command()
def sql(run: RunArg, statement: Annotated[str, typer.Argument(help="one read-only SQL statement")],
        timeout: Annotated[float, typer.Option("--timeout", help="stop the statement after this many "
                                               "seconds")] = SQL_TIMEOUT_S,
        max_rows: Annotated[int, typer.Option("--max-rows", "--limit",
                                              help="most rows to print")] = SQL_MAX_ROWS,
        format: Annotated[str, typer.Option("--format", "-f", help="table, json (a list of objects) or "
                                            "csv (a header, then the rows)")] = "table") -> None:
    """Run one read-only SQL statement and print its rows.

    Only reads run. On SQLite the statement may SELECT (WITH, RECURSIVE, functions) and use the
    PRAGMAs that only read (table_info, index_list, foreign_key_list, user_version...); refused
    before anything runs: ATTACH, DETACH, VACUUM (and VACUUM INTO), INSERT, UPDATE, DELETE,
    CREATE, DROP, ALTER (temp objects too), BEGIN/COMMIT/SAVEPOINT and any PRAGMA given a value.
    On PostgreSQL only a query runs (SELECT, WITH, VALUES, TABLE), in a read-only transaction
    that is rolled back. A refusal, a timeout or a SQL error prints one line and exits with 2;
    rows past --max-rows are cut, and a line on stderr says so.
    """
    from engine.lineage.connect import resolve_location
    from engine.lineage.errors import StoreError
    from engine.lineage.readonly import FORMATS, render_rows, run_readonly_sql

    with one_line_errors():
        if format not in FORMATS:
            raise StoreError(f"lineage sql: unknown format {format!r} (use one of: {', '.join(FORMATS)})")
        result = run_readonly_sql(resolve_location(run), statement, timeout_s=timeout, max_rows=max_rows)
    if format == "table" and result.columns:
        table = Table()
        for col in result.columns:
            table.add_column(escape(col))
        for row in result.rows:
            table.add_row(*(escape(_cell(v)) for v in row))
        (out if out.is_terminal else Console(width=PIPE_WIDTH)).print(table)
    elif format != "table":
        typer.echo(render_rows(result, format), nl=False)
    if result.truncated:
        err.print(f"lineage sql: showing the first {max_rows} rows; more were cut (raise --max-rows)",
                  highlight=False, soft_wrap=True)
