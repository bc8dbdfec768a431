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
from typing import Any

import pytest

from engine.lineage import queries
from engine.lineage.store import LineageStore

ROOT = Path(__file__).resolve().parents[2]
ARGS = ["configs/demo-scripted.yaml", "runtime.ray=false", "sampler.options.delay_s=0.8"]
VOLATILE = ("duration_s", "peak_memory_mb")
KINDS = ("task", "response", "critique", "refinement", "training_example")


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "engine.cli", *args]


def contents(run_dir: Path, kinds: tuple[str, ...] = KINDS,
             iterations: tuple[int, ...] = (1, 2)) -> Counter[str]:
    """What the run made, independent of record ids: (iteration, kind, payload) with multiplicity;
    an execution's measured time and memory are left out (they differ between two runs)."""
    store = LineageStore.for_run_dir(run_dir)
    run_id = json.loads((run_dir / "run.json").read_text())["run_id"]
    found: Counter[str] = Counter()
    for it in iterations:
        for kind in kinds:
            for row in queries.records_of_kind(store, run_id, it, kind):
                payload = {k: v for k, v in dict(row["payload"]).items() if k not in VOLATILE}
                found[json.dumps([it, kind, payload], sort_keys=True)] += 1
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


STREAMED = {  # SelfCodeAlign streams responses -> execute -> passed; chunks of 2 tasks
    "loop": "selfcodealign", "iterations": 1, "runtime": {"ray": False, "chunk_size": 2},
    "sampler": {"name": "scripted", "options": {"delay_s": 0.4, "responses": [
        "string reversal, slicing\n```python\ndef rev(s):\n    return s[::-1]\n```\n"
        "```python\nassert rev('ab') == 'ba'\n```"]}},
    "sandbox": {"name": "bubblewrap", "options": {"concurrency": 1, "disk_mb": 16}},
    "stages": {"seeds": {"options": {"count": 12}}, "responses": {"options": {"n": 2}}},
}


def chunk_rows(run_dir: Path, role: str) -> dict[int, tuple[Any, ...]]:
    """The finished chunks of ``role``'s execution, read as another process would."""
    import sqlite3

    path = run_dir / "lineage.sqlite"
    if not path.is_file():
        return {}
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        rows = conn.execute("SELECT c.chunk, c.n_out, c.seconds, c.inputs_hash FROM stage_chunks c "
                            "JOIN stage_executions se ON se.id = c.execution_id WHERE se.role = ?",
                            (role,)).fetchall()
    except sqlite3.OperationalError:  # not migrated yet
        return {}
    finally:
        conn.close()
    return {r[0]: tuple(r[1:]) for r in rows}


def test_sigkill_mid_stream_then_resume_redoes_only_unfinished_chunks(tmp_path: Path) -> None:
    from sandbox.bubblewrap import probe

    if (why := probe()) is not None:
        pytest.skip(f"bubblewrap unavailable here: {why}")
    (tmp_path / "streamed.yaml").write_text(json.dumps(STREAMED))
    whole = subprocess.run(cli("run", str(tmp_path / "streamed.yaml"), f"output_dir={tmp_path / 'whole'}"),
                           cwd=ROOT, capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr[-2000:]
    out = tmp_path / "out"
    with (tmp_path / "stderr.txt").open("wb") as err:
        proc = subprocess.Popen(cli("run", str(tmp_path / "streamed.yaml"), f"output_dir={out}"), cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=err)
    deadline, at_kill = time.time() + 120, {}
    while time.time() < deadline:
        assert proc.poll() is None, (tmp_path / "stderr.txt").read_text()[-2000:]
        runs = list(out.glob("*/run.json"))
        if runs and len(at_kill := chunk_rows(runs[0].parent, "responses")) >= 2:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    (run_dir,) = out.iterdir()
    at_kill = chunk_rows(run_dir, "responses")
    assert 2 <= len(at_kill) < 6, f"killed mid-stream: {len(at_kill)} of 6 chunks had finished"
    resumed = subprocess.run(cli("resume", str(run_dir)), cwd=ROOT, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    after = chunk_rows(run_dir, "responses")
    assert sorted(after) == list(range(6))
    assert {c: after[c] for c in at_kill} == at_kill, "a chunk finished before the kill was run again"
    (whole_dir,) = (tmp_path / "whole").iterdir()
    kinds = ("task", "response", "execution", "training_example")
    got, want = contents(run_dir, kinds, (1,)), contents(whole_dir, kinds, (1,))
    assert got == want and sum(want.values()) > 0, (got - want, want - got)
