"""``autodidact submit``, ``logs`` and ``stop``, and ``runs --address``: runs as Ray jobs.

What it is: Typer commands over engine/runtime/jobs.py. ``submit`` validates the config here
(a bad one exits 2 and nothing is submitted), submits it to the cluster's job server and returns at
once: the run goes on without this process. ``logs`` prints or follows a job's output, ``stop``
stops it, and ``runs --address`` (in engine/cli/app.py) lists the cluster's autodidact jobs. The
address is ``--address``, else ``RAY_API_SERVER_ADDRESS``, else ``RAY_ADDRESS``. What it is not:
Ray code (engine/runtime/jobs.py) or the run itself (``autodidact run``, which the job runs).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

AddressOpt = Annotated[str | None, typer.Option(
    "--address", help="the Ray job server, http://HOST:DASHBOARD_PORT (default: $RAY_API_SERVER_ADDRESS, "
                      "then $RAY_ADDRESS)", show_default=False)]
JobArg = Annotated[str, typer.Argument(help="job id, as `autodidact submit` printed it", show_default=False)]
FollowOpt = Annotated[bool, typer.Option("--follow", "-f", help="stream the output until the job ends")]


ConfigArg = Annotated[Path, typer.Argument(help="loop config YAML (see configs/)", show_default=False)]
OverridesArg = Annotated[list[str] | None, typer.Argument(
    help="dotted overrides such as iterations=3", show_default=False)]


def submit(config: ConfigArg, overrides: OverridesArg = None, address: AddressOpt = None,
           follow: FollowOpt = False) -> None:
    """Submit a run to a Ray cluster as a job: it survives this command (and your session) ending.

    The config is validated here first; the job runs `autodidact run` on the cluster with this
    install's interpreter, the config file shipped with it and `runtime.address=auto`."""
    from engine.cli.app import out, user_errors
    from engine.runtime.jobs import plan_submission
    from engine.runtime.jobs import submit as submit_job

    with user_errors():
        plan = plan_submission(config, overrides or [])
        url = submit_job(plan, address)
    flag = f" --address {url}" if address else ""
    out.print("[bold green]submitted[/bold green] " + escape(
              f"{plan.submission_id} to {url}\n"
              f"  runs in: {plan.output_dir}/<run id>\n"
              f"  follow:  autodidact logs {plan.submission_id} --follow{flag}\n"
              f"  list:    autodidact runs{' --address ' + url}\n"
              f"  stop:    autodidact stop {plan.submission_id}{flag}"), highlight=False, soft_wrap=True)
    if follow:
        _follow(plan.submission_id, address)


def logs(job: JobArg, address: AddressOpt = None, follow: FollowOpt = False) -> None:
    """Print a job's output so far, or follow it (--follow) until the job ends (exit 1 if the job
    failed or was stopped)."""
    from engine.cli.app import user_errors
    from engine.runtime.jobs import job_logs

    if follow:
        _follow(job, address)
        return
    with user_errors():
        text = job_logs(address, job)
    sys.stdout.write(text)
    sys.stdout.flush()


def _follow(job: str, address: str | None) -> None:
    from engine.cli.app import err, user_errors
    from engine.runtime.jobs import follow_logs

    def write(chunk: str) -> None:
        sys.stdout.write(chunk)
        sys.stdout.flush()

    with user_errors():
        try:
            status = follow_logs(address, job, write)
        except KeyboardInterrupt:
            err.print(f"stopped following; the job goes on (autodidact stop {job} stops it)",
                      highlight=False, soft_wrap=True, markup=False)
            raise typer.Exit(130) from None
    colour = "green" if status == "SUCCEEDED" else "red"
    err.print(f"job {escape(job)}: [{colour}]{status}[/{colour}]", highlight=False)
    if status in ("FAILED", "STOPPED"):
        raise typer.Exit(1)


def stop(job: JobArg, address: AddressOpt = None) -> None:
    """Stop a running job: Ray sends its run SIGTERM, and the run is marked failed."""
    from engine.cli.app import out, user_errors
    from engine.runtime.jobs import stop as stop_job

    with user_errors():
        stopping, status = stop_job(address, job)
    out.print(f"stopping {job}" if stopping else f"{job} is {status}: nothing to stop",
              highlight=False, soft_wrap=True, markup=False)


def cluster_runs(address: str) -> None:
    """``autodidact runs --address URL``: the cluster's autodidact jobs as a table."""
    from rich.table import Table

    from engine.cli.app import out, user_errors
    from engine.runtime.jobs import list_runs

    with user_errors():
        url, rows = list_runs(address)
    table = Table(title=f"autodidact jobs on {url}")
    for name in ("job id", "status", "started"):
        table.add_column(name, no_wrap=True)
    table.add_column("config", overflow="fold")
    colours = {"SUCCEEDED": "green", "FAILED": "red", "STOPPED": "yellow", "RUNNING": "cyan"}
    for row in rows:
        colour = colours.get(row.status, "white")
        table.add_row(escape(row.job_id), f"[{colour}]{escape(row.status)}[/{colour}]", escape(row.started),
                      escape(row.config))
    out.print(table)


def register(app: typer.Typer) -> None:
    """Add ``submit``, ``logs`` and ``stop`` to the top-level app."""
    app.command()(submit)
    app.command()(logs)
    app.command()(stop)
