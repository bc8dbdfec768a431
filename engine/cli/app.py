"""Top-level commands: validate, run, resume, runs, report; mounts ``plugins``, ``loops``, ``lineage``
and ``eval`` (engine/cli/evaluate.py).

What it is: thin Typer commands over engine.config and engine.runtime, with a rich progress
display per stage and a summary table per iteration. What it is not: a place for run logic.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from engine.errors import RunFailed, UserError

app = typer.Typer(
    name="autodidact", no_args_is_help=True, rich_markup_mode="rich",
    help="Run iterative LLM self-improvement loops, author plugins, and query the lineage of "
         "every record.\n\nStart with [bold]autodidact run configs/self.yaml[/bold].")
err = Console(stderr=True)
out = Console()

ConfigArg = Annotated[Path, typer.Argument(help="loop config YAML (see configs/)", show_default=False)]
OverridesArg = Annotated[list[str] | None, typer.Argument(
    help="dotted overrides such as iterations=3 stages.judge.options.votes=5", show_default=False)]


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds: the run is marked failed, Ray is shut down


TracebackOpt = Annotated[bool, typer.Option("--traceback", help="print the full traceback of a failure "
                                             "(it is always written to the run's run.log)")]


@contextmanager
def user_errors(traceback: bool = False) -> Iterator[None]:
    """Print a UserError as its message (no traceback) and exit with its code; a stage that failed
    during a run as one line naming where (its traceback is in the run's log file, and printed too
    with ``traceback``), exit 1. SIGTERM unwinds like Ctrl-C so the run is marked failed and its
    services are stopped."""
    import signal

    signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    except UserError as exc:
        err.print(f"[bold red]error:[/bold red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
    except RunFailed as exc:
        if traceback:
            import traceback as tb

            err.print(escape("".join(tb.format_exception(exc.__cause__ or exc))), highlight=False)
        where = (f" (traceback: {exc.run_dir}/run.log; fix the cause, then autodidact resume {exc.run_dir})"
                 if exc.run_dir else "")
        err.print(f"[bold red]error:[/bold red] {escape(exc.summary() + where)}", highlight=False,
                  soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None


@app.command()
def validate(config: ConfigArg, overrides: OverridesArg = None) -> None:
    """Check a config: YAML, types, stage names and options, and what a run would meet before its
    first stage (data files, the model, evaluator data, backends). Writes nothing."""
    from engine.config import load_config
    from engine.manager import create_plugin_manager
    from engine.preflight import preflight

    with user_errors():
        pm = create_plugin_manager()
        resolved = load_config(config, overrides or [], pm)
        preflight(resolved, pm)
    roles = ", ".join(f"{r}={s.info.name}" for r, s in resolved.stages.items())
    out.print("[green]ok[/green] " + escape(f"{config}: loop {resolved.config.loop.name!r}, "
                                           f"{resolved.config.iterations} iteration(s); {roles}"),
              highlight=False)


@app.command()
def run(config: ConfigArg, overrides: OverridesArg = None, traceback: TracebackOpt = False) -> None:
    """Run a loop config; prints progress per stage and a table per iteration."""
    from engine.config import load_config
    from engine.manager import create_plugin_manager
    from engine.runtime.run import start_run

    with user_errors(traceback):
        pm = create_plugin_manager()
        resolved = load_config(config, overrides or [], pm)
        with stage_progress() as (progress, on_iteration):
            run_dir = start_run(resolved, pm, progress, on_iteration)
        _final_report(run_dir)
    out.print(f"[bold green]done[/bold green]: {escape(str(run_dir))}\n"
              f"  lineage: autodidact lineage funnel {escape(str(run_dir))}", highlight=False)


@app.command()
def resume(run_dir: Annotated[Path, typer.Argument(help="a run directory under runs/")],
           traceback: TracebackOpt = False) -> None:
    """Continue an interrupted or failed run; finished stage work is not repeated."""
    from engine.runtime.run import resume_run

    with user_errors(traceback), stage_progress() as (progress, on_iteration):
        resume_run(run_dir, progress, on_iteration)
        _final_report(run_dir)
    out.print(f"[bold green]done[/bold green]: {escape(str(run_dir))}", highlight=False)


@app.command()
def runs(output_dir: Annotated[Path, typer.Option(help="where runs live")] = Path("runs"),
         address: Annotated[str | None, typer.Option(
             "--address", help="list the autodidact jobs of the Ray cluster whose job server is at "
                               "http://HOST:DASHBOARD_PORT instead", show_default=False)] = None) -> None:
    """List runs in OUTPUT_DIR with their status and progress (with --address: a cluster's jobs)."""
    import json

    from rich.table import Table

    if address:
        from engine.cli.jobs import cluster_runs

        cluster_runs(address)
        return

    table = Table("run directory", "status", "iterations done")
    for state_file in sorted(output_dir.glob("*/run.json")):
        state = json.loads(state_file.read_text())
        table.add_row(escape(str(state_file.parent)), escape(str(state.get("status", "?"))),
                      escape(str(state.get("iterations_done", 0))))
    out.print(table)


@app.command()
def report(run: Annotated[str, typer.Argument(help="run directory (or store URL with --run-id)")],
           run_id: Annotated[str | None, typer.Option("--run-id", help="run id in a shared store")] = None,
           plots: Annotated[Path | None, typer.Option(help="PNG folder (default: RUN/report)")] = None,
           ) -> None:
    """Per-iteration table of the funnel and metrics; PNG plots of both and of the trainers' loss curves."""
    from engine.cli.lineage import _open, _pick_run, one_line_errors
    from engine.report import paired_lines, plot_report

    with one_line_errors():
        store = _open(run)
        rid = _pick_run(store, run, run_id)
        out.print(report_table(store, rid))
        for line in paired_lines(store, rid):
            out.print(f"paired: {line}", highlight=False, markup=False)
        out_dir = plots or (Path(run) / "report" if Path(run).is_dir() else Path("report") / rid)
        written = plot_report(store, rid, out_dir)
        store.close()
    for path in written:
        out.print(f"plot: {path}", highlight=False, markup=False)


def report_table(store: Any, run_id: str) -> Any:
    """The per-iteration table: one line per role (records out) or metric, one column per
    iteration (iteration 0: the base model's evaluation); a metric's 95% confidence interval, where
    its evaluator kept one, beside its value."""
    from rich.table import Table

    from engine.report import iteration_intervals, iteration_table

    columns, rows = iteration_table(store, run_id)
    intervals = iteration_intervals(store, run_id)
    table = Table("stage / metric", *(f"iter {row[0]}" for row in rows), title=f"report of {run_id}")
    for j, name in enumerate(columns[1:], start=1):
        cis = intervals.get(name, {})
        table.add_row(escape(name), *("" if r[j] is None else f"{r[j]:.4g}" + (
            f" [{cis[r[0]][0]:.3g}, {cis[r[0]][1]:.3g}]" if r[0] in cis else "")
            if isinstance(r[j], float) else str(r[j]) for r in rows))
    return table


def _final_report(run_dir: Path) -> None:
    import json

    from engine.lineage.store import LineageStore

    state = json.loads((run_dir / "run.json").read_text())
    store = LineageStore.open(state["store_url"], create=False)
    try:
        out.print(report_table(store, state["run_id"]))
    finally:
        store.close()


@contextmanager
def stage_progress() -> Iterator[tuple[Any, Callable[[int, dict[str, Any]], None]]]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from engine.runtime.runner import StageProgress

    bar = Progress(TextColumn("{task.description:<24}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), console=err, transient=True, disable=not sys.stderr.isatty())
    tasks: dict[str, Any] = {}

    def start(role: str, total: int) -> None:
        tasks[role] = bar.add_task(role, total=total or None)
        if bar.disable:  # no live bar (output is not a terminal): say what started, so logs show it
            err.print(f"  [dim]{escape(role):<24} {total or '-':>6} in  started[/dim]", highlight=False)

    def advance(role: str, n: int) -> None:
        if role in tasks:
            bar.advance(tasks[role], n)

    def end(role: str, n_in: int, n_out: int, seconds: float) -> None:
        if role in tasks:
            bar.remove_task(tasks.pop(role))
        err.print(f"  [cyan]{escape(role):<24}[/cyan] {n_in:>6} in  {n_out:>6} out  {seconds:7.1f}s",
                  highlight=False)

    def fail(role: str, seconds: float, error: str) -> None:
        if role in tasks:
            bar.remove_task(tasks.pop(role))
        err.print(f"  [red]{escape(role):<24} failed after {seconds:.1f}s[/red]", highlight=False)

    def on_iteration(it: int, summary: dict[str, Any]) -> None:
        table = Table(title=f"iteration {it}", show_header=True)
        table.add_column("stage")
        table.add_column("records", justify="right")
        for role, count in summary.get("funnel", {}).items():
            table.add_row(escape(role), str(count))
        for metric, value in summary.get("metrics", {}).items():
            table.add_row(f"[magenta]{escape(metric)}[/magenta]", f"{value:.4g}")
        err.print(table)

    with bar:
        yield StageProgress(start, advance, end, fail), on_iteration


def _mount() -> None:
    from engine.cli.evaluate import register as register_eval
    from engine.cli.jobs import register as register_jobs
    from engine.cli.loops import app as loops_app
    from engine.cli.plugins import app as plugins_app
    from engine.cli.serve import register as register_serve

    register_jobs(app)  # submit, logs, stop: runs as Ray jobs
    register_serve(app)  # serve: a sampler behind an OpenAI-compatible endpoint
    register_eval(app)  # eval: any evaluator on any model version of a run, or on the base model
    app.add_typer(plugins_app, name="plugins")
    app.add_typer(loops_app, name="loops")
    try:
        from engine.cli.lineage import app as lineage_app
    except ImportError:  # the lineage commands arrive with the lineage store
        return
    app.add_typer(lineage_app, name="lineage")


_mount()


def main() -> None:
    # Busy-waiting OpenMP threads (torch's default) collapse when anything else wants a core:
    # measured here, 2-thread batched generation fell from ~260 to 8 tokens/s with one busy
    # core, and to 72 with passive waiting. Set before torch loads; an explicit setting wins.
    import os

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    app()
