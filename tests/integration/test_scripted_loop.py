"""The SELF loop end to end with the scripted sampler: lineage, funnel, resume after a crash."""

from __future__ import annotations

import json
import types
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine import hookimpl
from engine.cli import app
from engine.config import load_config
from engine.errors import StageFailed
from engine.lineage import queries
from engine.lineage.store import LineageStore
from engine.manager import create_plugin_manager
from engine.runtime.run import resume_run, start_run

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "demo-scripted.yaml"


def record_ids(run_dir: Path) -> dict[str, int]:
    store = LineageStore.for_run_dir(run_dir)
    try:
        rows = queries.funnel(store, json.loads((run_dir / "run.json").read_text())["run_id"])
        kinds: dict[str, int] = {}
        for it in (1, 2):
            for kind in ("task", "response", "critique", "refinement", "training_example"):
                kinds[f"{it}/{kind}"] = len(queries.records_of_kind(
                    store, json.loads((run_dir / "run.json").read_text())["run_id"], it, kind))
        kinds["funnel_rows"] = len(rows)
        return kinds
    finally:
        store.close()


def test_cli_run_records_lineage(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["run", str(CONFIG), f"output_dir={tmp_path}"])
    assert result.exit_code == 0, result.output
    (run_dir,) = tmp_path.iterdir()
    state = json.loads((run_dir / "run.json").read_text())
    assert state["status"] == "finished" and state["iterations_done"] == 2
    store = LineageStore.for_run_dir(run_dir)
    funnel = {(r["iteration"], r["role"]): r["n_out"] for r in queries.funnel(store, state["run_id"])}
    assert funnel[(1, "prompts")] == 4 and funnel[(1, "respond")] == 8 and funnel[(1, "judge")] == 8
    examples = queries.records_of_kind(store, state["run_id"], 1, "training_example")
    assert examples, "the demo keeps some examples"
    for ex in examples:  # every example goes back to a task through a response and a verdict
        kinds = {row["kind"] for row in queries.ancestors(store, ex["id"])}
        assert {"task", "response", "critique"} <= kinds
    store.close()
    report = CliRunner().invoke(app, ["report", str(run_dir)])
    assert report.exit_code == 0, report.output
    assert "respond" in report.output and "iter 2" in report.output
    assert (run_dir / "report" / "funnel.png").stat().st_size > 1000


class Crash(Exception):
    pass


def crash_once_plugin(role: str, iteration: int) -> types.ModuleType:
    mod = types.ModuleType("crasher")

    @hookimpl
    def on_stage_end(run_id: str, iteration: int, role: str, stage: str, n_in: int, n_out: int,  # noqa: ARG001
                     seconds: float, error: str | None) -> None:
        if (role, iteration) == (crash_role, crash_iteration):
            raise Crash(f"{role} in iteration {iteration}")

    crash_role, crash_iteration = role, iteration
    mod.on_stage_end = on_stage_end  # type: ignore[attr-defined]
    return mod


@pytest.mark.parametrize("role, iteration", [("judge", 1), ("refine", 2), ("passing:originals", 2)])
def test_resume_after_crash_matches_uninterrupted(tmp_path: Path, role: str, iteration: int) -> None:
    local = "runtime.ray=false"  # the runtime on Ray is tested in test_ray_runtime.py
    whole = start_run(load_config(CONFIG, [f"output_dir={tmp_path / 'a'}", local]), create_plugin_manager())
    pm = create_plugin_manager(plugins=[crash_once_plugin(role, iteration)])
    with pytest.raises(Crash):
        start_run(load_config(CONFIG, [f"output_dir={tmp_path / 'b'}", local], pm), pm)
    (crashed,) = (tmp_path / "b").iterdir()
    assert json.loads((crashed / "run.json").read_text())["status"] == "failed"
    resume_run(crashed)
    assert json.loads((crashed / "run.json").read_text())["status"] == "finished"
    assert record_ids(crashed) == record_ids(whole)


def test_resume_bad_dir(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["resume", str(tmp_path)])
    assert result.exit_code == 2 and "not a run directory" in result.output


def fragile_critic_plugin() -> types.ModuleType:
    from engine.contracts import Stage
    from engine.records import Critique, Link

    class Fragile(Stage):
        kind = "critic"
        name = "fragile"

        def critique(self, responses):  # type: ignore[no-untyped-def]
            if any("ignores" in r.text for r in responses):
                raise ValueError("cannot judge this one")
            return [Critique(verdict=True, vote_share=1.0, parents=[Link(id=r.id, role="judges")])
                    for r in responses]

    mod = types.ModuleType("fragile_plugin")
    mod.register_critics = hookimpl(lambda: [Fragile])  # type: ignore[attr-defined]
    return mod


@pytest.mark.parametrize("policy", ["skip", "fail"])
def test_error_policy_per_stage(tmp_path: Path, policy: str) -> None:
    pm = create_plugin_manager(plugins=[fragile_critic_plugin()])
    overrides = [f"output_dir={tmp_path}", "runtime.ray=false", "iterations=1",
                 "stages.judge.name=fragile", "stages.judge.options={}", f"stages.judge.on_error={policy}",
                 "sampler.options.responses=[fine, this ignores the task]"]
    resolved = load_config(CONFIG, overrides, pm)
    if policy == "fail":
        with pytest.raises(StageFailed, match="ValueError: cannot judge"):
            start_run(resolved, pm)
        return
    run_dir = start_run(resolved, pm)
    store = LineageStore.for_run_dir(run_dir)
    run_id = json.loads((run_dir / "run.json").read_text())["run_id"]
    errors = queries.records_of_kind(store, run_id, 1, "stage_error")
    responses = queries.records_of_kind(store, run_id, 1, "response")
    bad = [r["id"] for r in responses if "ignores" in r["payload"]["text"]]
    assert bad and len(errors) == len(bad)
    parents = {row["id"] for e in errors for row in queries.ancestors(store, e["id"], max_depth=1)}
    assert parents == set(bad)
    judged = {r["role"]: r["n_out"] for r in queries.funnel(store, run_id)}["judge"]
    assert judged == len(responses) - len(bad)
    store.close()
