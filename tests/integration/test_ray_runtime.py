"""The runtime on Ray: a local Ray on loopback, joining a `ray start --head`, actor restarts."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from engine.contracts import StageContext
from engine.sampling.protocol import SampleRequest
from plugins.sampler_scripted import ScriptedOptions, ScriptedSampler

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "demo-scripted.yaml"
ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


@pytest.fixture
def local_ray():
    import ray

    from engine.runtime.ray_services import start_ray

    start_ray(None, 2, 1)
    yield ray
    ray.shutdown()


def test_sampler_actor_killed_mid_batch_is_restarted_and_batch_retried(local_ray) -> None:
    from engine.runtime.ray_services import ActorProxy

    proxy = ActorProxy.create(ScriptedSampler, ScriptedOptions(echo=True, delay_s=2.0), StageContext())
    first_pid = local_ray.get(proxy.actor.pid.remote())
    requests = [SampleRequest.chat(f"q{i}") for i in range(4)]
    out: list = []
    worker = threading.Thread(target=lambda: out.append(proxy.sample(requests)))
    worker.start()
    time.sleep(1.0)
    os.kill(first_pid, signal.SIGKILL)  # the actor dies in the middle of the batch
    worker.join(timeout=60)
    assert out, "the batch was retried on the restarted actor"
    assert [r.completions[0].text for r in out[0]] == [f"q{i}" for i in range(4)]
    assert local_ray.get(proxy.actor.pid.remote()) != first_pid


def test_run_joins_existing_cluster(tmp_path: Path, ray_procs: Any) -> None:
    ray_bin = shutil.which("ray", path=str(Path(sys.executable).parent))
    assert ray_bin, "ray CLI is installed with the ray package"
    env = {**os.environ, **ENV, "RAY_AUTH_MODE": "disabled"}
    (port,) = ray_procs.free_ports(1)
    temp = tempfile.mkdtemp(prefix="adj", dir="/tmp")  # short: Ray's socket paths live under it
    head = subprocess.Popen([ray_bin, "start", "--head", "--block", "--node-ip-address=127.0.0.1",
                             f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
                             "--disable-usage-stats", f"--temp-dir={temp}"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "engine.cli", "run", str(CONFIG), f"output_dir={tmp_path}",
             f"runtime.address=127.0.0.1:{port}", "iterations=1"],
            env=env, capture_output=True, text=True, timeout=180)
        assert result.returncode == 0, result.stderr[-3000:]
        (run_dir,) = tmp_path.iterdir()
        assert '"status": "finished"' in (run_dir / "run.json").read_text()
    finally:  # only this head's processes: `ray stop` would stop every Ray on the machine
        ray_procs.kill_session(head.pid)
        head.wait(timeout=30)
        shutil.rmtree(temp, ignore_errors=True)


def _actor_pids() -> set[int]:
    import psutil

    return {p.pid for p in psutil.process_iter(["cmdline"])
            if p.info["cmdline"] and p.info["cmdline"][0].startswith("ray::ServiceActor")}


def test_node_removed_mid_iteration_loses_nothing(tmp_path: Path) -> None:
    import psutil
    import ray
    from ray.cluster_utils import Cluster

    from engine.config import load_config
    from engine.manager import create_plugin_manager
    from engine.runtime.run import start_run

    os.environ.update(ENV)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    removed: list = []

    def remove_the_sampler_node() -> None:
        deadline = time.time() + 60
        while time.time() < deadline and not removed:
            for pid in _actor_pids():
                parents = {p.pid for p in psutil.Process(pid).parents()}
                for node in workers:
                    if node.all_processes["raylet"][0].process.pid in parents:
                        time.sleep(1.5)  # let it get into the middle of the run
                        cluster.remove_node(node)
                        removed.append(node)
                        return
            time.sleep(0.2)

    killer = threading.Thread(target=remove_the_sampler_node)
    try:
        base = ["iterations=1", "sampler.options.delay_s=0.5"]
        whole = start_run(load_config(CONFIG, [*base, f"output_dir={tmp_path / 'a'}", "runtime.ray=false"]),
                          create_plugin_manager())
        killer.start()
        cut = start_run(load_config(CONFIG, [*base, f"output_dir={tmp_path / 'b'}",
                                             f"runtime.address={cluster.address}"]), create_plugin_manager())
        killer.join()
        assert removed, "a node hosting the sampler actor was removed mid-run"
        from engine.lineage import queries
        from engine.lineage.store import LineageStore

        def counts(run_dir: Path) -> dict:
            store = LineageStore.for_run_dir(run_dir)
            run_id = store.runs()[0]["id"]
            out = {(r["role"], r["n_in"], r["n_out"]) for r in queries.funnel(store, run_id)}
            store.close()
            return out

        assert counts(cut) == counts(whole)
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_named_samplers_each_get_their_own_actor_pool(tmp_path: Path) -> None:
    """On Ray, a teacher sampler beside the policy's is its own pool of actors; the stage that
    names it is answered by it, the others by the policy's."""
    import json
    import sqlite3

    from typer.testing import CliRunner

    from engine.cli import app

    result = CliRunner().invoke(app, [
        "run", str(CONFIG), "iterations=1", f"output_dir={tmp_path}", "samplers.teacher.name=scripted",
        "samplers.teacher.options.responses=['Teacher answer.']", "samplers.teacher.options.delay_s=0.2",
        "stages.respond.options.sampler=teacher"])
    assert result.exit_code == 0, result.output
    (run_dir,) = tmp_path.iterdir()
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"
    with sqlite3.connect(run_dir / "sample-cache.sqlite") as db:
        rows = db.execute("SELECT sampler, result FROM samples").fetchall()
    teacher = [r for s, r in rows if s == "teacher"]
    assert teacher and all("Teacher answer." in r for r in teacher)
    assert any(s == "policy" for s, _ in rows)
