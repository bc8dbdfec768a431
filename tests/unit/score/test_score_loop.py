"""The SCoRe loop's mechanics with a scripted policy (no model): episodes per step, Stage I and II
reward shaping, per-turn KL weights, every turn in lineage. Training on the real model is measured
elsewhere; here the loop runs without a trainer."""

from __future__ import annotations

import re
from typing import Any

from engine.records import Trajectory
from engine.sampling.protocol import SampleRequest
from engine.toolkit.math_problems import generate
from loops.score import ScoreOptions, shape


def policy(request: SampleRequest, i: int) -> str:
    """Wrong on attempt 1 (answer + 1), right on attempt 2: the self-correction SCoRe wants."""
    question = (request.messages or ())[0][1]
    answer = next(p.answer for p in PROBLEMS if p.question in question)
    attempts = sum(1 for role, _ in request.messages or () if role == "assistant")
    return f"The answer is {int(answer) + (1 if attempts == 0 else 0)}."


PROBLEMS: list[Any] = []


def test_score_loop_rolls_out_shapes_and_records(run_loop: Any) -> None:
    global PROBLEMS
    PROBLEMS = [p for it in (1, 2) for step in range(2) for p in generate(4, 1, it * 1_009 + step)]
    result = run_loop({"loop": {"name": "score", "options": {"policy_steps": 2, "problems_per_step": 4}},
                       "iterations": 2}, script=policy)
    for it, stage in ((1, "I"), (2, "II")):
        funnel = result.funnel(it)
        assert funnel["env:step0"] == funnel["env:step1"] == 4
        shaped = [t for t in result.records("trajectory", it)
                  if isinstance(t, Trajectory) and "score" in t.rewards]
        assert len(shaped) == 8 and all(t.meta["stage"] == stage for t in shaped)
        for t in shaped:
            assert t.rewards["reward"] == [0.0, 1.0], "wrong, then right"
            if stage == "I":
                assert t.rewards["score"] == [0.0, 1.0] and t.turn_kl == [10.0, 1.0]
            else:
                assert t.rewards["score"] == [0.0, 1.0 + 10.0 * 1.0] and t.turn_kl == [1.0, 1.0]
        turns = result.records("turn", it)
        assert len(turns) == 16 and {t.index for t in turns} == {0, 1}
        fix = [t for t in turns if t.index == 0][0].observation
        assert re.search(r"might be an error", fix), "SCoRe's correction turn follows attempt 1"


def test_shaping_of_a_correct_then_wrong_episode() -> None:
    t = Trajectory(messages=[], rewards={"reward": [1.0, 0.0]})
    opts = ScoreOptions(alpha=2.0, stage1_kl=5.0)
    one, two = shape(t, "I", opts), shape(t, "II", opts)
    assert one.rewards["score"] == [0.0, 0.0] and one.turn_kl == [5.0, 1.0]
    assert two.rewards["score"] == [1.0, 0.0 + 2.0 * (0.0 - 1.0)], "c->i is penalised in Stage II"
    assert one.parent_ids("input") == [t.id] and one.id != t.id


def test_shaping_of_an_episode_that_ended_at_attempt_one() -> None:
    """python-exec stops on success: Stage I leaves attempt 1 untrained (strong KL), Stage II pays r1."""
    t = Trajectory(messages=[], rewards={"reward": [1.0]})
    opts = ScoreOptions(stage1_kl=5.0)
    one, two = shape(t, "I", opts), shape(t, "II", opts)
    assert one.rewards["score"] == [0.0] and one.turn_kl == [5.0]
    assert two.rewards["score"] == [1.0] and two.turn_kl == [1.0]
