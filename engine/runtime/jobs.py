"""Runs as Ray jobs: submit a loop config to a cluster's job server, list, tail and stop them.

What it is: ``plan_submission`` (validate the config here, exactly as ``autodidact validate``,
then build the job: the config file shipped as the job's ``working_dir``, an entrypoint that
runs ``<this venv's python> -m engine.cli run`` inside the cluster with ``runtime.address=auto``
so the run joins the cluster, relative paths pinned to absolute ones, a readable submission id),
and thin wrappers over Ray's ``JobSubmissionClient`` (submit, list, logs, tail, stop) that turn
an unreachable address, a refused token or an unknown job into one-line ``UserError``s. What it
is not: the CLI's display (engine/cli/jobs.py) nor the run itself, which is the ordinary
``autodidact run`` (engine/runtime/run.py), so a job behaves like a local run that joined a
cluster. The job uses this machine's interpreter path and installation: the cluster's nodes must
have the same install at the same path (one machine, or identical images), and the run directory
is written on the node that runs the job, under the absolute ``output_dir``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import secrets
import shlex
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import UserError

TAG = "autodidact"
"""Metadata key that marks a job as an autodidact run (its value: the config as given)."""
ADDRESS_ENV = ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS")
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


@dataclass
class JobPlan:
    """What ``submit`` sends: built and validated locally, before anything reaches the cluster."""

    submission_id: str
    config: Path
    overrides: list[str]
    pinned: list[str]
    entrypoint: str
    output_dir: Path
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass
class JobRow:
    job_id: str
    status: str
    started: str
    config: str
    entrypoint: str
    message: str


def plan_submission(config: Path, overrides: list[str], python: str | None = None) -> JobPlan:
    """Validate ``config`` with ``overrides`` (ConfigError, exit 2, on a bad one) and build the job."""
    from engine.config import load_config

    resolved = load_config(config, overrides)
    cfg = resolved.config
    pinned: list[str] = []
    if cfg.runtime.address is None:
        pinned.append("runtime.address=auto")  # inside a job RAY_ADDRESS names the cluster
    output_dir = cfg.output_dir if cfg.output_dir.is_absolute() else Path.cwd() / cfg.output_dir
    if not cfg.output_dir.is_absolute():  # the job's cwd is its unpacked working_dir
        pinned.append(f"output_dir={json.dumps(str(output_dir))}")
    source = cfg.data.source
    if source and not Path(source).is_absolute() and Path(source).is_file():
        pinned.append(f"data.source={json.dumps(str(Path(source).resolve()))}")
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", cfg.name or resolved.loop.info.name).strip("-") or "run"
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    argv = [python or sys.executable, "-m", "engine.cli", "run", config.name, *overrides, *pinned]
    return JobPlan(
        submission_id=f"{name}-{stamp}-{secrets.token_hex(2)}", config=config, overrides=list(overrides),
        pinned=pinned, entrypoint=shlex.join(argv), output_dir=output_dir,
        metadata={TAG: str(config), "overrides": shlex.join(overrides), "output_dir": str(output_dir)})


def resolve_address(address: str | None) -> str:
    """``address``, else ``RAY_API_SERVER_ADDRESS``, else ``RAY_ADDRESS``; UserError if none."""
    for value in (address, *(os.environ.get(k) for k in ADDRESS_ENV)):
        if value:
            return value.rstrip("/")
    raise UserError("no Ray address: pass --address http://HOST:PORT (the cluster's dashboard port, "
                    "8265 by default) or set RAY_API_SERVER_ADDRESS")


@contextmanager
def _client(address: str | None) -> Iterator[tuple[Any, str]]:
    """A connected JobSubmissionClient and its address; Ray's errors become one-line UserErrors."""
    import logging

    import requests
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    for name in ("ray", "ray.dashboard.modules.dashboard_sdk", "ray._private.runtime_env.packaging"):
        logging.getLogger(name).setLevel(logging.WARNING)  # "Uploading package ..." and the like
    url = resolve_address(address)
    saved = {k: os.environ.pop(k) for k in ADDRESS_ENV if k in os.environ}  # Ray lets them win
    try:
        client = JobSubmissionClient(url)
    except (ConnectionError, requests.RequestException) as exc:
        raise UserError(f"cannot reach the Ray job server at {url}: is the cluster up, and is that its "
                        f"dashboard port? ({_first_line(exc)})") from None
    except AuthenticationError:
        raise UserError(f"the Ray job server at {url} refused the request: the cluster uses token "
                        "auth; set RAY_AUTH_MODE=token (the token is read from ~/.ray/auth_token, "
                        "RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN)") from None
    except (RuntimeError, ValueError) as exc:
        raise UserError(f"{url}: not a Ray job server ({_first_line(exc)})") from None
    finally:
        os.environ.update(saved)
    try:
        yield client, url
    except AuthenticationError as exc:
        raise UserError(f"{url}: {_first_line(exc)}") from None
    except requests.RequestException as exc:
        raise UserError(f"lost the Ray job server at {url}: {_first_line(exc)}") from None
    except RuntimeError as exc:  # Ray's "Request failed with status code ..."
        raise UserError(f"{url}: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _job(client: Any, url: str, job_id: str) -> Any:
    try:
        return client.get_job_info(job_id)
    except RuntimeError as exc:
        if "404" in str(exc) or "does not exist" in str(exc):
            raise UserError(f"no job {job_id!r} on the cluster at {url} "
                            f"(autodidact runs --address {url} lists them)") from None
        raise UserError(f"{url}: {_first_line(exc)}") from None


def submit(plan: JobPlan, address: str | None) -> str:
    """Ship the config and start the job; returns the job server's address. The job runs on
    without this process."""
    with _client(address) as (client, url), tempfile.TemporaryDirectory(prefix="autodidact-job-") as tmp:
        shutil.copyfile(plan.config, Path(tmp) / plan.config.name)
        try:
            client.submit_job(entrypoint=plan.entrypoint, submission_id=plan.submission_id,
                              runtime_env={"working_dir": tmp}, metadata=plan.metadata)
        except RuntimeError as exc:
            raise UserError(f"{url}: the job server refused the job: {_first_line(exc)}") from None
    return url


def list_runs(address: str | None) -> tuple[str, list[JobRow]]:
    """The cluster's autodidact jobs, oldest first (other jobs on the cluster are left out)."""
    with _client(address) as (client, url):
        jobs = [j for j in client.list_jobs() if TAG in (j.metadata or {})]
    jobs.sort(key=lambda j: j.start_time or 0)
    return url, [JobRow(
        job_id=j.submission_id or j.job_id or "?", status=str(getattr(j.status, "value", j.status)),
        started=_local_time(j.start_time),
        config=f"{j.metadata[TAG]} {j.metadata.get('overrides', '')}".strip(),
        entrypoint=j.entrypoint or "", message=j.message or "") for j in jobs]


def _local_time(ms: int | None) -> str:
    return dt.datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S") if ms else ""


def job_status(address: str | None, job_id: str) -> str:
    with _client(address) as (client, url):
        return str(getattr(_job(client, url, job_id).status, "value", ""))


def job_logs(address: str | None, job_id: str) -> str:
    """Everything the job has printed so far."""
    with _client(address) as (client, url):
        _job(client, url, job_id)
        try:
            return str(client.get_job_logs(job_id))
        except RuntimeError as exc:
            raise UserError(f"{url}: no logs for {job_id!r}: {_first_line(exc)}") from None


def follow_logs(address: str | None, job_id: str, write: Callable[[str], None]) -> str:
    """Write the job's output as it comes (from the start) until the job ends; returns its status."""
    import asyncio

    async def tail(client: Any) -> None:
        async for chunk in client.tail_job_logs(job_id):
            write(chunk)

    with _client(address) as (client, url):
        _job(client, url, job_id)
        try:
            asyncio.run(tail(client))
        except RuntimeError as exc:  # the connection dropped: report where the job stands
            write(f"[log stream closed: {_first_line(exc)}]\n")
        return str(getattr(_job(client, url, job_id).status, "value", ""))


def stop(address: str | None, job_id: str) -> tuple[bool, str]:
    """Ask the cluster to stop the job. Returns (stopping, status before the request)."""
    with _client(address) as (client, url):
        status = str(getattr(_job(client, url, job_id).status, "value", ""))
        if status in TERMINAL:
            return False, status
        return bool(client.stop_job(job_id)), status
