"""Streamed stages (engine/runtime/streaming.py): chunked lineage writes, resume by chunk, pipelining."""

from __future__ import annotations

import json
import threading
import time
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel, ConfigDict

from engine import hookimpl
from engine.config import parse_config, resolve_config
from engine.contracts import Role, Stage
from engine.errors import StageFailed
from engine.lineage.store import LineageStore
from engine.manager import create_plugin_manager
from engine.records import Link, Record, Response, Seed, Task
from engine.runtime.run import resume_run, start_run

SEEDS, CHUNK = 50, 5  # ten chunks


class Log:
    """What the stages did, shared by the test and the stages (reset per test)."""

    calls: ClassVar[list[tuple[str, int, float, float]]] = []  # (stage, first input, start, end)
    fail_at: ClassVar[dict[str, int]] = {}  # stage -> the input number whose chunk raises
    sleep: ClassVar[float] = 0.0
    lock = threading.Lock()


class StepOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Make(Stage[StepOptions]):
    kind = "generator"
    name = "make-task"
    accepts = ("seed",)
    produces = ("task",)

    def generate(self, inputs: Sequence[Record]) -> list[Record]:
        return [Task(prompt=f"task {s.text}", parents=[Link(id=s.id)]) for s in self._step(inputs)]

    def _step(self, inputs: Sequence[Any]) -> Sequence[Any]:
        start = time.perf_counter()
        first = int(str(getattr(inputs[0], "text", "") or inputs[0].prompt).split()[-1])
        if Log.fail_at.get(self.name) is not None and first <= Log.fail_at[self.name] < first + len(inputs):
            raise RuntimeError(f"{self.name} broke on chunk starting at {first}")
        time.sleep(Log.sleep)
        with Log.lock:
            Log.calls.append((self.name, first, start, time.perf_counter()))
        return inputs


class Answer(Make):
    name = "answer-task"
    accepts = ("task",)
    produces = ("response",)

    def generate(self, inputs: Sequence[Record]) -> list[Record]:
        return [Response(text=f"answer to {t.prompt}", prompt=t.prompt, parents=[Link(id=t.id)])  # type: ignore[attr-defined]
                for t in self._step(inputs)]


class Piped(Stage[StepOptions]):
    kind = "loop"
    name = "piped"
    roles = {"make": Role(kind="generator", takes=("seed",), gives=("task",), default="make-task"),
             "answer": Role(kind="generator", takes=("task",), gives=("response",), default="answer-task")}
    trains: ClassVar[dict[str, tuple[str, ...]]] = {}
    seen: ClassVar[list[str]] = []

    def run_iteration(self, runner: Any, iteration: int) -> None:
        seeds = (Seed(text=f"seed {i}") for i in range(SEEDS))  # lazy: never a list in the driver
        tasks = runner.stream("make", seeds, chunk_size=CHUNK)
        Piped.seen = [r.id for r in runner.stream("answer", tasks).records()]


class Whole(Piped):
    name = "whole"

    def run_iteration(self, runner: Any, iteration: int) -> None:
        tasks = runner.call("make", [Seed(text=f"seed {i}") for i in range(SEEDS)])
        Piped.seen = [r.id for r in runner.call("answer", tasks)]


def manager() -> Any:
    mod = types.ModuleType("streaming_plugin")
    mod.register_loops = hookimpl(lambda: [Piped, Whole])  # type: ignore[attr-defined]
    mod.register_generators = hookimpl(lambda: [Make, Answer])  # type: ignore[attr-defined]
    return create_plugin_manager(entry_points=False, plugins=[mod])


@pytest.fixture(autouse=True)
def fresh_log() -> None:
    Log.calls, Log.fail_at, Log.sleep = [], {}, 0.0


def run(tmp_path: Path, loop: str = "piped") -> Path:
    pm = manager()
    cfg = parse_config({"loop": loop, "sampler": "scripted", "output_dir": str(tmp_path),
                        "runtime": {"ray": False}})
    return start_run(resolve_config(cfg, pm), pm)


def lineage(run_dir: Path) -> dict[str, Any]:
    store = LineageStore.for_run_dir(run_dir)
    try:
        conn = store.engine.connect()
        chunks = dict(conn.exec_driver_sql(
            "SELECT se.role, count(*) FROM stage_chunks c JOIN stage_executions se "
            "ON se.id = c.execution_id GROUP BY se.role").all())
        execs = {r[0]: r[1:] for r in conn.exec_driver_sql(
            "SELECT role, n_in, n_out, finished, error FROM stage_executions").all()}
        kinds = dict(conn.exec_driver_sql("SELECT kind, count(*) FROM records GROUP BY kind").all())
        hashes = sorted(f"{r[0]} {r[1]}" for r in conn.exec_driver_sql("SELECT kind, payload FROM records"))
        conn.close()
    finally:
        store.close()
    return {"chunks": chunks, "execs": execs, "kinds": kinds, "contents": hashes}


def test_a_stream_writes_each_chunk_and_makes_what_one_call_makes(tmp_path: Path) -> None:
    streamed = lineage(run(tmp_path / "s"))
    ids_streamed = list(Piped.seen)
    whole = lineage(run(tmp_path / "w", loop="whole"))
    assert len(ids_streamed) == SEEDS and len(set(ids_streamed)) == SEEDS
    assert streamed["chunks"] == {"make": SEEDS // CHUNK, "answer": SEEDS // CHUNK}
    assert whole["chunks"] == {"make": 1, "answer": 1}, "a call is one chunk"
    assert streamed["execs"]["answer"] == (SEEDS, SEEDS, 1, None)
    assert streamed["kinds"] == whole["kinds"] == {"task": SEEDS, "response": SEEDS}
    assert streamed["contents"] == whole["contents"] and len(streamed["contents"]) == 2 * SEEDS


def test_the_next_stage_starts_on_the_first_finished_chunks(tmp_path: Path) -> None:
    Log.sleep = 0.02
    run(tmp_path)
    make_ends = [end for stage, _, _, end in Log.calls if stage == "make-task"]
    answer_starts = [start for stage, _, start, _ in Log.calls if stage == "answer-task"]
    assert min(answer_starts) < max(make_ends), "answer waited for the whole of make"
    # and make runs at most a few chunks ahead: the driver never holds the stage
    ahead = sum(1 for end in make_ends if end < min(answer_starts))
    assert ahead <= 4, f"make ran {ahead} chunks ahead of answer"


def test_a_resumed_run_redoes_only_the_chunks_that_had_not_finished(tmp_path: Path) -> None:
    Log.fail_at = {"answer-task": 32}  # answer's 7th chunk (inputs 30..34) raises
    with pytest.raises(StageFailed, match="RuntimeError: answer-task broke on chunk starting at 30"):
        run(tmp_path / "a")
    (run_dir,) = (tmp_path / "a").iterdir()
    before = lineage(run_dir)
    assert before["chunks"]["answer"] == 6, "chunks 0-5 of answer were written as they finished"
    made_before = {first for stage, first, _, _ in Log.calls if stage == "make-task"}
    assert before["execs"]["answer"][2:] == (0, "RuntimeError: answer-task broke on chunk starting at 30")
    Log.calls, Log.fail_at = [], {}
    resume_run(run_dir, pm=manager())
    redone = {stage: sorted(first for s, first, _, _ in Log.calls if s == stage)
              for stage in ("make-task", "answer-task")}
    assert redone["answer-task"] == list(range(30, SEEDS, CHUNK)), "only answer's unfinished chunks"
    assert set(redone["make-task"]).isdisjoint(made_before), "make's finished chunks came from lineage"
    after = lineage(run_dir)
    whole = lineage(run(tmp_path / "w"))
    assert after["contents"] == whole["contents"], "nothing lost, nothing written twice"
    assert after["execs"]["answer"][:3] == (SEEDS, SEEDS, 1)
    state = json.loads((run_dir / "run.json").read_text())
    assert state["status"] == "finished"


def test_an_error_upstream_reaches_the_loop_and_marks_that_stage_failed(tmp_path: Path) -> None:
    Log.fail_at = {"make-task": 12}
    with pytest.raises(StageFailed, match="RuntimeError: make-task broke"):
        run(tmp_path)
    (run_dir,) = tmp_path.iterdir()
    execs = lineage(run_dir)["execs"]
    assert execs["make"][2] == 0 and "broke" in execs["make"][3]
    assert execs["answer"][2] == 0, "answer did not finish on partial input"


def test_a_finished_stream_is_replayed_chunk_by_chunk_without_running(tmp_path: Path) -> None:
    run_dir = run(tmp_path)
    first = list(Piped.seen)
    state = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps({**state, "iterations_done": 0, "status": "failed"}))
    Log.calls = []
    resume_run(run_dir, pm=manager())
    assert Log.calls == [], "every chunk came from lineage"
    assert Piped.seen == first


def test_the_service_clock_counts_overlapping_calls_once() -> None:
    from engine.runtime.services import Clock, Timed

    class Slow:
        def sample(self, requests: Any) -> Any:
            time.sleep(0.2)
            return requests

    clock = Clock()
    timed = Timed(Slow(), clock)
    threads = [threading.Thread(target=timed.sample, args=([],)) for _ in range(3)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    assert 0.19 <= clock.seconds <= wall, "three overlapping 0.2 s calls are 0.2 s inside services"
