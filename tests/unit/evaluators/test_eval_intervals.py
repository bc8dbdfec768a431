"""Every evaluator keeps a 95% interval (``details["ci95"]``) and the per-item data the report
pairs across iterations: humaneval's ``item_correct`` in problem order, ifeval's per-prompt 0/1
(prompt level) and instruction shares with their weights (instruction level), longbench's S_l
per prompt, gsm8k's and self-correction's as before."""

from __future__ import annotations

from typing import Any

import pytest

from engine.contracts import StageContext, build_stage
from engine.manager import create_plugin_manager
from engine.toolkit.stats import bootstrap_mean, wilson
from plugins.evaluator_humaneval import HumanEval
from plugins.evaluator_ifeval import IFEval
from plugins.evaluator_longbench import LongBenchWrite

PM = create_plugin_manager(entry_points=False)


def test_humaneval_keeps_each_problem_in_order() -> None:
    ev = build_stage(HumanEval, {}, StageContext(plugins=PM))
    problems = [{"task_id": f"HumanEval/{k}"} for k in range(5)]
    result = ev.greedy_result(problems, [1, 0, 2, 0, 1], None, {"problems": 5})
    assert result.details["item_correct"] == [1, 0, 1, 0, 1]
    assert result.details["passed"] == ["HumanEval/0", "HumanEval/2", "HumanEval/4"]
    assert result.details["ci95"] == list(wilson(3, 5))


def test_ifeval_keeps_prompt_and_instruction_level_items() -> None:
    ev = build_stage(IFEval, {}, StageContext(plugins=PM))
    rows = [{"key": k, "instruction_id_list": ids} for k, ids in
            enumerate([["a"], ["a", "b"], ["b", "c", "d"]])]
    strict = [[True], [True, False], [True, True, True]]
    loose = [[True], [True, True], [False, True, True]]
    out = {r.metric: r for r in ev.results(rows, list(zip(strict, loose, strict=True)), None,
                                           {"prompts": 3, "instructions": 6})}
    assert out["prompt_strict"].details["item_correct"] == [1, 0, 1]
    assert out["prompt_loose"].details["item_correct"] == [1, 1, 0]
    assert out["prompt_strict"].details["ci95"] == list(wilson(2, 3))
    inst = out["inst_strict"].details
    assert inst["item_scores"] == [1.0, 0.5, 1.0] and inst["item_weights"] == [1, 2, 3]
    assert out["inst_strict"].value == pytest.approx(5 / 6)
    assert inst["ci95"] == list(bootstrap_mean([1.0, 0.5, 1.0], weights=[1, 2, 3]))
    assert "item_scores" not in out["prompt_strict"].details


def test_longbench_keeps_an_interval_per_metric_and_s_l_per_prompt() -> None:
    ev = build_stage(LongBenchWrite, {}, StageContext(plugins=PM))
    rows = [{"length": n} for n in (100, 200, 300, 400)]
    answers = [" ".join(["w"] * n) for n in (100, 50, 300, 2000)]
    out = {r.metric: r for r in ev.scored(rows, answers, [0, 0, 0, 1], None, {})}
    s_l = out["S_l"].details
    assert s_l["item_scores"] == [row[2] for row in s_l["items"]]
    assert s_l["ci95"] == list(bootstrap_mean(s_l["item_scores"]))
    assert out["hit_token_limit"].details["ci95"] == list(wilson(1, 4))
    for metric, r in out.items():
        lo, hi = r.details["ci95"]
        assert lo <= hi, metric
        assert metric == "S_l" or "item_scores" not in r.details


def test_gsm8k_and_self_correction_keep_intervals(scripted_sampler: Any) -> None:
    from engine.toolkit.math_problems import held_out

    answers = {p.question: p.answer for p in held_out(10)}

    def half_right(request: Any, i: int) -> str:
        question = next(q for q in answers if q in (request.messages or ())[0][1])
        return f"The answer is {answers[question] if sorted(answers).index(question) % 2 else 'x'}."

    sampler = scripted_sampler(script=half_right)
    gsm = build_stage(PM.stage("evaluator", "gsm8k").cls, {"dataset": "held-out", "n": 10},
                      StageContext(sampler=sampler, plugins=PM))
    (acc,) = gsm.evaluate(sampler, None)
    assert acc.details["ci95"] == list(wilson(5, 10)) and sum(acc.details["item_correct"]) == 5
    sc = build_stage(PM.stage("evaluator", "self-correction").cls, {"n": 10},
                     StageContext(sampler=sampler, plugins=PM))
    out = {r.metric: r for r in sc.evaluate(sampler, None)}
    assert out["held-out/acc@t1"].details["ci95"] == list(wilson(5, 10))
    lo, hi = out["held-out/delta"].details["ci95"]
    assert lo <= out["held-out/delta"].value <= hi
