"""The episode driver (engine/episodes.py): batched turns, per-episode stops, failures, lineage."""

from __future__ import annotations

import json
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import Field

from engine import hookimpl
from engine.config import parse_config, resolve_config
from engine.contracts import Role, Stage, StageContext, build_stage, check_stage_class
from engine.episodes import Environment, Episode, EpisodeOptions, Observation
from engine.lineage import queries
from engine.lineage.store import LineageStore
from engine.manager import create_plugin_manager
from engine.records import Task, Trajectory, Turn
from engine.runtime.run import start_run
from engine.sampling.protocol import SampleRequest


class GuessOptions(EpisodeOptions):
    max_turns: int = Field(3, ge=1, le=64)


class Guess(Environment[GuessOptions]):
    """Guess the number in the task: 'wrong' until the action says it; a task with 'boom' raises."""

    name = "guess"

    def reset(self, tasks: Sequence[Task]) -> list[Observation]:
        return [Observation(text=f"Guess my number ({t.prompt}).", info={"target": t.prompt.split()[-1]})
                for t in tasks]

    def step(self, episodes: Sequence[Episode], actions: Sequence[str]) -> list[Observation]:
        out = []
        for ep, action in zip(episodes, actions, strict=True):
            if "boom" in ep.task.prompt and ep.turn == 1:
                raise RuntimeError("the environment broke")
            hit = ep.info["target"] in action
            out.append(Observation(text="right" if hit else "wrong, again", reward=float(hit), done=hit))
        return out


def script(request: SampleRequest, i: int) -> str:
    """The policy: guesses 1, 2, 3... one per turn (turn = assistant messages so far)."""
    turn = sum(1 for role, _ in request.messages or () if role == "assistant")
    return f"I guess {turn + 1}"


def env(sampler: Any, **options: Any) -> Guess:
    stage = build_stage(Guess, options, StageContext(sampler=sampler))
    assert isinstance(stage, Guess)
    return stage


def test_one_batched_sampler_call_per_turn_and_each_episode_stops_on_its_own(scripted_sampler: Any) -> None:
    sampler = scripted_sampler(script=script)
    guess = env(sampler)
    tasks = [Task(prompt=f"target {n}") for n in (1, 2, 5, 3)]
    trajectories = guess.rollout(tasks)
    assert sampler.calls == 3, "turns 1, 2 and 3: one call each, across every live episode"
    assert sampler.requests_seen == 4 + 3 + 2, "finished episodes are not sampled again"
    assert [t.meta["turns"] for t in trajectories] == [1, 2, 3, 3]
    rewards = [t.rewards["reward"] for t in trajectories]
    assert rewards == [[1.0], [0.0, 1.0], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    two = trajectories[1]
    assert [m["role"] for m in two.messages] == ["user", "assistant", "user", "assistant"]
    assert two.messages[2]["content"] == "wrong, again"
    turns = [r for r in guess.context.emitted if isinstance(r, Turn)]
    assert len(turns) == 9
    chain = {t.id: t for t in turns}
    last = chain[two.parent_ids("episode")[0]]
    assert last.index == 1 and last.done and last.reward == 1.0
    (prev,) = last.parent_ids("previous")
    assert chain[prev].index == 0 and chain[prev].parent_ids("input") == [tasks[1].id]
    assert two.parent_ids("input") == [tasks[1].id]


def test_an_environment_that_raises_fails_that_episode_only(scripted_sampler: Any) -> None:
    guess = env(scripted_sampler(script=script))
    tasks = [Task(prompt="target 3"), Task(prompt="boom target 3"), Task(prompt="target 2")]
    ok, failed, other = guess.rollout(tasks)
    assert failed.meta["status"] == "failed" and "the environment broke" in failed.meta["error"]
    assert failed.meta["turns"] == 2 and failed.rewards["reward"] == [0.0], "its first turn stands"
    assert ok.meta == {"status": "done", "turns": 3} and other.meta == {"status": "done", "turns": 2}
    (bad,) = [t for t in guess.context.emitted if isinstance(t, Turn) and t.error]
    assert bad.index == 1 and bad.done and bad.parent_ids("previous")


def test_turn_limit_and_system_message(scripted_sampler: Any) -> None:
    guess = env(scripted_sampler(script=script), max_turns=1, system="Be brief.")
    (t,) = guess.rollout([Task(prompt="target 9")])
    assert t.meta["turns"] == 1 and t.messages[0] == {"role": "system", "content": "Be brief."}
    assert t.messages[-1]["role"] == "assistant", "no observation after the last action"


def test_environment_class_checks() -> None:
    assert check_stage_class(Guess, "environment") == []

    class NoStep(Stage[GuessOptions]):
        kind = "environment"
        name = "no-step"

        def rollout(self, tasks: Any) -> list[Any]:
            return []

    assert check_stage_class(NoStep, "environment") == [
        "has no method 'reset' (an environment's verb)", "has no method 'step' (an environment's verb)"]


class Play(Stage[EpisodeOptions]):
    kind = "loop"
    name = "play"
    roles = {"env": Role(kind="environment", takes=("task",), gives=("trajectory",), default="guess")}
    trains: ClassVar[dict[str, tuple[str, ...]]] = {}

    def run_iteration(self, runner: Any, iteration: int) -> None:
        tasks = runner.ingest("tasks", [Task(prompt="target 2"), Task(prompt="boom target 4")])
        runner.call("env", tasks)


def test_every_turn_lands_in_lineage_linked_to_the_one_before(tmp_path: Path) -> None:
    mod = types.ModuleType("episode_plugin")
    mod.register_loops = hookimpl(lambda: [Play])  # type: ignore[attr-defined]
    mod.register_environments = hookimpl(lambda: [Guess])  # type: ignore[attr-defined]
    from engine.testing import _script_plugin

    pm = create_plugin_manager(entry_points=False, plugins=[mod, _script_plugin(script)])
    cfg = parse_config({"loop": "play", "sampler": "run-loop-script", "output_dir": str(tmp_path),
                        "runtime": {"ray": False}})
    run_dir = start_run(resolve_config(cfg, pm), pm)
    run_id = json.loads((run_dir / "run.json").read_text())["run_id"]
    with LineageStore.for_run_dir(run_dir) as store:
        turns = queries.records_of_kind(store, run_id, 1, "turn")
        (ok, failed) = queries.records_of_kind(store, run_id, 1, "trajectory")
        assert len(turns) == 2 + 2
        up = queries.ancestors(store, ok["id"])
        chain = sorted((row["depth"], row["kind"], row["role"]) for row in up)
        assert chain == [(1, "task", "input"), (1, "turn", "episode"), (2, "turn", "previous"),
                         (3, "task", "input")], "trajectory <- turn 1 <- turn 0 <- task"
        funnel = {r["role"]: r["n_out"] for r in queries.funnel(store, run_id) if r["iteration"] == 1}
        assert funnel["env"] == 2
    from typer.testing import CliRunner

    from engine.cli.lineage import app

    shown = CliRunner().invoke(app, ["tree", ok["id"], "--store", str(run_dir)], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert "#1 'I guess 2' -> reward 1.0, 'right'" in shown.output, shown.output
    assert "#0 'I guess 1' -> reward 0.0, 'wrong, again'" in shown.output


@pytest.mark.parametrize("bad", [[], [Observation()] * 3])
def test_a_step_returning_the_wrong_count_is_an_episode_error(scripted_sampler: Any, bad: list[Any]) -> None:
    guess = env(scripted_sampler(script=script))
    guess.step = lambda episodes, actions: bad  # type: ignore[method-assign]
    out = guess.rollout([Task(prompt="target 1"), Task(prompt="target 2")])
    assert all(t.meta["status"] == "failed" for t in out)


def test_trajectories_are_what_the_reinforce_trainer_reads(scripted_sampler: Any) -> None:
    (t,) = env(scripted_sampler(script=script)).rollout([Task(prompt="target 2")])
    assert isinstance(t, Trajectory) and t.rewards == {"reward": [0.0, 1.0]}
    assert t.token_ids == [[], []] and t.logprobs == [[], []], "the scripted sampler reports no tokens"


def test_a_task_the_environment_cannot_score_fails_alone(scripted_sampler: Any) -> None:
    from engine.contracts import build_stage
    from engine.manager import create_plugin_manager

    pm = create_plugin_manager(entry_points=False)
    sampler = scripted_sampler(["The answer is 42."])
    env = build_stage(pm.stage("environment", "math").cls, None, StageContext(sampler=sampler, plugins=pm))
    ok, bad = env.rollout([Task(prompt="40 + 2?", meta={"answer": "42"}), Task(prompt="no gold")])  # type: ignore[attr-defined]
    assert ok.meta == {"status": "done", "turns": 1} and ok.rewards["reward"] == [1.0]
    assert bad.meta["status"] == "failed" and "has no gold answer (meta['answer'])" in bad.meta["error"]
