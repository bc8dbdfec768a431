"""The self-correction evaluator on HumanEval: python-exec episodes with the sandbox's feedback
between the two attempts (a scripted policy, the real bubblewrap sandbox)."""

from __future__ import annotations

from typing import Any

import pytest

from engine.contracts import StageContext, build_stage
from engine.manager import create_plugin_manager
from engine.records import Task, Trajectory
from engine.sampling.protocol import SampleRequest
from engine.toolkit.humaneval import load_problems, prompt_helpers
from plugins.evaluator_selfcorrect import SelfCorrection, SelfCorrectionOptions, code_task, outcome

PROBLEMS = load_problems()[:3]


@pytest.fixture(scope="module")
def sandbox(bubblewrap_sandbox: Any) -> Any:
    return bubblewrap_sandbox


def problem_of(request: SampleRequest) -> dict[str, Any]:
    first = next(text for role, text in request.messages or () if role == "user")
    return next(p for p in PROBLEMS if p["prompt"] in first)


def attempt(request: SampleRequest) -> int:
    return sum(1 for role, _ in request.messages or () if role == "assistant")


def right(problem: dict[str, Any]) -> str:
    return f"Here it is:\n```python\n{problem['prompt']}{problem['canonical_solution']}```"


def wrong(problem: dict[str, Any]) -> str:
    return f"```python\ndef {problem['entry_point']}(*args):\n    return None\n```"


def evaluate(sandbox: Any, script: Any, n: int = 3) -> tuple[dict[str, Any], Any]:
    from plugins.sampler_scripted import ScriptedSampler

    pm = create_plugin_manager(entry_points=False)
    sampler = ScriptedSampler(script=script)
    ev = build_stage(pm.stage("evaluator", "self-correction").cls,
                     {"dataset": "humaneval", "n": n, "max_tokens": 384},
                     StageContext(sampler=sampler, plugins=pm, sandbox=sandbox))
    return {r.metric: r for r in ev.evaluate(sampler, None)}, sampler  # type: ignore[attr-defined]


def test_wrong_then_right_is_incorrect_to_correct_with_the_failing_test_shown(sandbox: Any) -> None:
    feedback: dict[str, str] = {}

    def script(request: SampleRequest, i: int) -> str:
        p = problem_of(request)
        if attempt(request) == 0:
            return wrong(p)
        feedback[p["task_id"]] = [text for role, text in request.messages or () if role == "user"][1]
        return right(p)

    results, sampler = evaluate(sandbox, script)
    assert set(results) == {f"humaneval/{m}" for m in ("acc@t1", "acc@t2", "delta", "i->c", "c->i")}
    assert [results[f"humaneval/{m}"].value for m in ("acc@t1", "acc@t2", "delta", "i->c", "c->i")] \
        == [0.0, 1.0, 1.0, 1.0, 0.0]
    details = results["humaneval/i->c"].details
    assert details["outcomes"] == [[0, 1]] * 3 and details["incorrect->correct"] == 3
    assert (details["correct@t1"], details["correct@t2"], details["problems"]) == (0, 3, 3)
    assert details["environment"] == "python-exec" and details["failed_episodes"] == 0
    assert sampler.calls == 2, "one batched sampler call per attempt across the episodes"
    assert sorted(feedback) == [p["task_id"] for p in PROBLEMS]
    for p in PROBLEMS:  # the sandbox's answer to attempt 1 is the second user message
        text = feedback[p["task_id"]]
        assert "Running your code against the tests gave:" in text and "Status: failed." in text
        assert "Failing test: line " in text and f"check({p['entry_point']})" in text
        assert "Error: " in text, "the exception the check raised is shown"


def test_right_at_once_ends_the_episode_and_carries_to_attempt_2(sandbox: Any) -> None:
    results, sampler = evaluate(sandbox, lambda request, i: right(problem_of(request)))
    assert results["humaneval/acc@t1"].value == results["humaneval/acc@t2"].value == 1.0
    assert results["humaneval/delta"].value == 0.0 and results["humaneval/c->i"].value == 0.0
    details = results["humaneval/acc@t1"].details
    assert details["outcomes"] == [[1, 1]] * 3 and details["ended_at_t1"] == 3
    assert sampler.calls == 1, "every episode passed at attempt 1, so none asked for attempt 2"


def test_each_way_an_episode_can_go(sandbox: Any) -> None:
    def script(request: SampleRequest, i: int) -> str:
        p = problem_of(request)
        plan = {0: "right", 1: "fixed", 2: "never"}[PROBLEMS.index(p)]
        return right(p) if plan == "right" or (plan == "fixed" and attempt(request) == 1) else wrong(p)

    results, _ = evaluate(sandbox, script)
    details = results["humaneval/acc@t1"].details
    assert details["outcomes"] == [[1, 1], [0, 1], [0, 0]]
    assert results["humaneval/acc@t1"].value == pytest.approx(1 / 3)
    assert results["humaneval/acc@t2"].value == pytest.approx(2 / 3)
    assert results["humaneval/i->c"].value == pytest.approx(1 / 3)
    assert details["ended_at_t1"] == 1


def test_code_tasks_show_the_prompt_and_carry_the_check() -> None:
    assert len(SelfCorrection(SelfCorrectionOptions(dataset="humaneval")).problems()) == 164, \
        "n (default 300) is capped at HumanEval's 164"
    tasks = SelfCorrection(SelfCorrectionOptions(dataset="humaneval", n=2)).problems()
    assert [t.meta["problem"] for t in tasks] == ["HumanEval/0", "HumanEval/1"]
    first = tasks[0]
    assert PROBLEMS[0]["prompt"] in first.prompt and "whole function" in first.prompt
    assert first.meta["setup"] == "from typing import List", "the prompt's imports run before the answer"
    assert first.meta["tests"].rstrip().endswith("check(has_close_elements)")
    assert PROBLEMS[0]["test"] in first.meta["tests"]
    # a helper the prompt gives (and the test calls) runs before the answer; the stub does not
    (cyclic,) = [p for p in load_problems() if p["entry_point"] == "decode_cyclic"]
    setup = code_task(cyclic).meta["setup"]
    assert "def encode_cyclic" in setup and "def decode_cyclic" not in setup
    assert prompt_helpers(PROBLEMS[0]) == "from typing import List"


def test_outcome_carries_only_a_pass_that_ended_the_episode() -> None:
    def traj(rewards: list[float], status: str = "done") -> Trajectory:
        return Trajectory(messages=[], rewards={"reward": rewards}, meta={"status": status})

    assert outcome(traj([1.0])) == [1, 1]
    assert outcome(traj([0.0, 1.0])) == [0, 1] and outcome(traj([1.0, 0.0])) == [1, 0]
    assert outcome(traj([0.0])) == [0, 0]
    assert outcome(traj([1.0], status="failed")) == [1, 0], "a failed episode is wrong where it stopped"
    assert outcome(Trajectory(messages=[], rewards={}, meta={"status": "failed"})) == [0, 0]
    assert isinstance(code_task(PROBLEMS[1]), Task)
