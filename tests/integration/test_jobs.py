"""Runs as Ray jobs against a real `ray start --head` with its job server on loopback.

The head runs with token auth (what `ray start --head` turns on by itself), so every client
here sets RAY_AUTH_MODE=token (the token is ~/.ray/auth_token, made by `ray get-auth-token
--generate` when missing: `ray start` with RAY_AUTH_MODE=token refuses to start without one). Every CLI
call is its own process, as a user's would be: `submit` returns at once and the job finishes
without it. The head is stopped by killing its own process session, never with `ray stop`
(which would stop every Ray on the machine).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "demo-scripted.yaml"
ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token"}


@pytest.fixture(scope="module")
def head(ray_procs: Any) -> Iterator[str]:
    """A Ray head with a job server; yields the job server's URL."""
    ray_bin = shutil.which("ray", path=str(Path(sys.executable).parent))
    assert ray_bin, "ray CLI is installed with the ray package"
    gcs, dashboard, client, agent = ray_procs.free_ports(4)
    temp = tempfile.mkdtemp(prefix="adj", dir="/tmp")  # short: Ray's socket paths live under it
    log = open(Path(temp) / "head.log", "w")  # noqa: SIM115
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")}
    subprocess.run([ray_bin, "get-auth-token", "--generate"], env={**env, **ENV}, capture_output=True,
                   check=True, timeout=60)
    proc = subprocess.Popen(
        [ray_bin, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={gcs}",
         "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}", f"--ray-client-server-port={client}",
         f"--dashboard-agent-listen-port={agent}", "--num-cpus=2", "--disable-usage-stats",
         f"--temp-dir={temp}"],
        env={**env, **ENV}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{dashboard}"
    try:
        deadline = time.monotonic() + 60
        while cli("runs", "--address", url).returncode != 0:
            assert proc.poll() is None, (Path(temp) / "head.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the job server did not come up in 60 s"
            time.sleep(1)
        yield url
    finally:
        ray_procs.kill_session(proc.pid)
        proc.wait(timeout=30)
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


def cli(*args: str, cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")}
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env={**base, **ENV, "COLUMNS": "200", **env}, timeout=120)


def job_ids(url: str) -> list[str]:
    result = cli("runs", "--address", url)
    assert result.returncode == 0, result.stderr
    return [line.split()[1] for line in result.stdout.splitlines() if line.startswith("│")]


def test_plan_is_validated_and_pins_the_run_to_the_cluster(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.runtime.jobs import plan_submission

    monkeypatch.chdir(tmp_path)
    plan = plan_submission(CONFIG, ["iterations=1"])
    assert plan.entrypoint.startswith(f"{sys.executable} -m engine.cli run demo-scripted.yaml iterations=1 ")
    assert "runtime.address=auto" in plan.pinned and plan.output_dir == tmp_path / "runs"
    assert plan.submission_id.startswith("demo-") and plan.metadata["autodidact"] == str(CONFIG)


def test_bad_config_exits_2_and_submits_nothing(head: str) -> None:
    before = job_ids(head)
    result = cli("submit", str(CONFIG), "stages.judge.options.votes=0", "--address", head)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: override 'stages.judge.options.votes=0': stages.judge.options.votes: "
        "Input should be greater than or equal to 1"]
    assert job_ids(head) == before
    # validated before any contact: a bad config with no cluster behind the address says the same
    offline = cli("submit", str(CONFIG), "stages.judge.options.votes=0", "--address", "http://127.0.0.1:9")
    assert offline.returncode == 2 and offline.stderr == result.stderr


def test_submitted_run_outlives_its_client_and_finishes(head: str, tmp_path: Path) -> None:
    # each scripted sampler call sleeps 0.5 s: the job is still running when `submit` has exited
    result = cli("submit", str(CONFIG), f"output_dir={tmp_path}", "sampler.options.delay_s=0.5",
                 "--address", head)
    assert result.returncode == 0, result.stderr
    job = result.stdout.split()[1]
    assert f"autodidact logs {job} --follow --address {head}" in result.stdout
    listed = cli("runs", "--address", head).stdout
    row = next(line for line in listed.splitlines() if job in line)
    assert "PENDING" in row or "RUNNING" in row, listed  # the client is gone, the job goes on
    assert "demo-scripted.yaml" in row and "delay_s=0.5" in listed  # the config column folds

    followed = cli("logs", job, "--follow", RAY_API_SERVER_ADDRESS=head)  # the env stands in
    assert followed.returncode == 0, followed.stdout[-2000:] + followed.stderr
    assert "SUCCEEDED" in followed.stderr
    (run_dir,) = tmp_path.iterdir()
    state = json.loads((run_dir / "run.json").read_text())
    assert state["status"] == "finished" and state["iterations_done"] == 2
    with sqlite3.connect(run_dir / "lineage.sqlite") as db:
        assert db.execute("SELECT count(*) FROM records").fetchone()[0] > 0
    listed = cli("runs", "--address", head).stdout
    assert any(job in line and "SUCCEEDED" in line for line in listed.splitlines()), listed

    logs = cli("logs", job, "--address", head)
    assert logs.returncode == 0 and f"done: {run_dir}" in logs.stdout.replace("\n", "")  # rich wraps
    assert "respond" in logs.stdout and "iteration 2" in logs.stdout
    stopped = cli("stop", job, "--address", head)
    assert stopped.returncode == 0 and "SUCCEEDED: nothing to stop" in stopped.stdout


def test_unknown_job_and_unreachable_address_are_one_line_errors(head: str, ray_procs: Any) -> None:
    unknown = cli("logs", "no-such-job", "--address", head)
    assert unknown.returncode == 2
    assert unknown.stderr.startswith(f"error: no job 'no-such-job' on the cluster at {head}")
    assert len(unknown.stderr.strip().splitlines()) == 1
    (closed,) = ray_procs.free_ports(1)
    gone = cli("runs", "--address", f"http://127.0.0.1:{closed}")
    assert gone.returncode == 2 and len(gone.stderr.strip().splitlines()) == 1
    assert gone.stderr.startswith(f"error: cannot reach the Ray job server at http://127.0.0.1:{closed}")
    nowhere = cli("logs", "x")
    assert nowhere.returncode == 2 and "no Ray address" in nowhere.stderr
