"""Done means (issue 13): a run launched with ``runtime.address`` on a real two-node Ray cluster
places its sampler replicas on both nodes and finishes.

The cluster is what a user starts: ``ray start --head`` and a second ``ray start --address=...``
with a ``worker_node`` custom resource, both on loopback with their own free ports and
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=1`` (with 0 the second node refuses to join one machine's
cluster). The head turns on token auth, so every client sets ``RAY_AUTH_MODE=token`` (the token is
~/.ray/auth_token, made when missing). The run is the CLI in its own process, as a user's would
be; where its replicas ran comes afterwards from Ray's state API (the actors are gone by then,
their records stay). Each ``ray start --block`` runs in its own session, and teardown SIGKILLs
those two sessions only, never ``ray stop`` (which would stop every Ray on the machine).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "demo-scripted.yaml"
ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1", "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token"}


@dataclass
class TwoNodes:
    gcs: str  # 127.0.0.1:P, what runtime.address takes
    dashboard: str  # the state API's address
    worker_node_id: str


def _env() -> dict[str, str]:
    skip = ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")
    return {**{k: v for k, v in os.environ.items() if k not in skip}, **ENV}


def _python(code: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(),
                          cwd=ROOT, timeout=timeout)


def _nodes(gcs: str) -> list[dict[str, object]]:
    """The cluster's live nodes as a client sees them ([] while it cannot connect)."""
    code = ("import json, logging, ray\n"
            f"ray.init(address={gcs!r}, include_dashboard=False, logging_level=logging.ERROR)\n"
            "print(json.dumps([{'id': n['NodeID'], 'resources': n['Resources']} "
            "for n in ray.nodes() if n['Alive']]))\n")
    result = _python(code)
    return json.loads(result.stdout.strip().splitlines()[-1]) if result.returncode == 0 else []


@pytest.fixture(scope="module")
def two_nodes(ray_procs: Any) -> Iterator[TwoNodes]:
    ray_bin = shutil.which("ray", path=str(Path(sys.executable).parent))
    assert ray_bin, "ray CLI is installed with the ray package"
    subprocess.run([ray_bin, "get-auth-token", "--generate"], env=_env(), capture_output=True, check=True,
                   timeout=60)
    gcs, dashboard, client, *agents = ray_procs.free_ports(7)
    temp = tempfile.mkdtemp(prefix="ad2n", dir="/tmp")  # short: Ray's socket paths live under it
    log = open(Path(temp) / "nodes.log", "w")  # noqa: SIM115
    common = ["--block", "--node-ip-address=127.0.0.1", "--disable-usage-stats"]
    head = [ray_bin, "start", "--head", f"--port={gcs}", "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard}", f"--ray-client-server-port={client}",
            f"--dashboard-agent-listen-port={agents[0]}", f"--dashboard-agent-grpc-port={agents[1]}",
            "--num-cpus=2", f"--temp-dir={temp}", *common]
    worker = [ray_bin, "start", f"--address=127.0.0.1:{gcs}", "--resources={\"worker_node\": 1}",
              f"--dashboard-agent-listen-port={agents[2]}", f"--dashboard-agent-grpc-port={agents[3]}",
              "--num-cpus=1", *common]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(subprocess.Popen(head, env=_env(), stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True))
        deadline = time.monotonic() + 90
        while not (nodes := _nodes(f"127.0.0.1:{gcs}")):
            assert procs[0].poll() is None and time.monotonic() < deadline, _tail(temp)
            time.sleep(1)
        procs.append(subprocess.Popen(worker, env=_env(), stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True))
        while len(nodes := _nodes(f"127.0.0.1:{gcs}")) < 2:
            assert procs[1].poll() is None and time.monotonic() < deadline, _tail(temp)
            time.sleep(1)
        (joined,) = [n for n in nodes if "worker_node" in n["resources"]]  # type: ignore[operator]
        yield TwoNodes(f"127.0.0.1:{gcs}", f"http://127.0.0.1:{dashboard}", str(joined["id"]))
    finally:
        for proc in reversed(procs):
            ray_procs.kill_session(proc.pid)
            proc.wait(timeout=30)
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


def _tail(temp: str) -> str:
    return (Path(temp) / "nodes.log").read_text()[-3000:]


def test_run_on_two_nodes_places_replicas_on_both(two_nodes: TwoNodes, tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "engine.cli", "run", str(CONFIG), f"runtime.address={two_nodes.gcs}",
         "sampler.replicas=2", f"output_dir={tmp_path}", "name=two-nodes"],
        capture_output=True, text=True, cwd=ROOT, env={**_env(), "COLUMNS": "200"}, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    (run_dir,) = tmp_path.iterdir()
    state = json.loads((run_dir / "run.json").read_text())
    assert state["status"] == "finished" and state["iterations_done"] == 2

    code = ("import json\nfrom ray.util.state import list_actors\n"
            f"actors = list_actors(address={two_nodes.dashboard!r}, "
            "filters=[('class_name', '=', 'ServiceActor')], detail=True, limit=1000)\n"
            "print(json.dumps([{'node': a.node_id, 'state': a.state, 'job': a.job_id} for a in actors]))\n")
    listed = _python(code)
    assert listed.returncode == 0, listed.stderr[-3000:]
    actors = json.loads(listed.stdout.strip().splitlines()[-1])
    assert len(actors) == 2, actors  # the run's two sampler replicas (the demo has no sandbox)
    nodes = {n["id"] for n in _nodes(two_nodes.gcs)}
    assert {a["node"] for a in actors} == nodes and two_nodes.worker_node_id in nodes, (actors, nodes)
    assert {a["state"] for a in actors} == {"DEAD"}, "the run closed its replicas"
