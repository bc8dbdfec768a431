"""SIGKILL a run at several points, resume it, and end with exactly the uninterrupted records."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from engine.lineage import queries
from engine.lineage.store import LineageStore

ROOT = Path(__file__).resolve().parents[2]
ARGS = ["configs/demo-scripted.yaml", "runtime.ray=false", "sampler.options.delay_s=0.8"]
KINDS = ("task", "response", "critique", "refinement", "training_example")


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "engine.cli", *args]


def contents(run_dir: Path) -> Counter[str]:
    """What the run made, independent of record ids: (iteration, kind, payload) with multiplicity."""
    store = LineageStore.for_run_dir(run_dir)
    run_id = json.loads((run_dir / "run.json").read_text())["run_id"]
    found: Counter[str] = Counter()
    for it in (1, 2):
        for kind in KINDS:
            for row in queries.records_of_kind(store, run_id, it, kind):
                found[json.dumps([it, kind, row["payload"]], sort_keys=True)] += 1
    store.close()
    return found


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Counter[str]:
    out = tmp_path_factory.mktemp("whole")
    subprocess.run(cli("run", *ARGS, f"output_dir={out}"), check=True, cwd=ROOT, capture_output=True)
    (run_dir,) = out.iterdir()
    return contents(run_dir)


@pytest.mark.parametrize("after_s", [1.0, 3.5, 6.0])
def test_sigkill_then_resume(tmp_path: Path, uninterrupted: Counter[str], after_s: float) -> None:
    out = tmp_path / "out"
    with (tmp_path / "stderr.txt").open("wb") as err:
        proc = subprocess.Popen(cli("run", *ARGS, f"output_dir={out}"), cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.time() + 120
    while time.time() < deadline and not list(out.glob("*/run.json")):
        assert proc.poll() is None, (tmp_path / "stderr.txt").read_text()[-2000:]
        time.sleep(0.05)  # wait for the run to exist, then let it get some way in
    time.sleep(after_s)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    (run_dir,) = out.iterdir()
    state = json.loads((run_dir / "run.json").read_text())
    assert state["status"] == "running", "killed before it could finish"
    resumed = subprocess.run(cli("resume", str(run_dir)), cwd=ROOT, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"
    got = contents(run_dir)
    assert got == uninterrupted, (got - uninterrupted, uninterrupted - got)
