"""The gsm8k evaluator on a scripted model: accuracy, the +refine score, and the report's paired
comparison of iterations problem by problem."""

from __future__ import annotations

from typing import Any

import pytest

from engine.contracts import StageContext, build_stage
from engine.manager import create_plugin_manager
from engine.records import EvalResult
from engine.sampling.protocol import SampleRequest
from engine.toolkit.math import gsm8k_cases
from engine.toolkit.math_problems import held_out
from plugins.evaluator_gsm8k import GSM8K, GSM8KOptions, load_problems

ACC = "held-out/accuracy"

PM = create_plugin_manager(entry_points=False)
JUDGE = "You are a strict judge"
REFINE = "Here is an instruction, a response to it, and a critique"


def model(gold: dict[str, str], right: Any, seen: list[SampleRequest] | None = None) -> Any:
    """Answers a question right when ``right(gold answer)``, else one off; as a judge says No to a
    wrong answer; as a refiner writes the right one."""
    def answer(req: SampleRequest, i: int) -> str:
        if seen is not None:
            seen.append(req)
        text = (req.messages or ())[0][1]
        question = max((q for q in gold if q in text), key=len)
        if text.startswith(JUDGE):
            ok = f"The answer is {gold[question]}." in text
            return f"Checked. Final judgement: {'Yes' if ok else 'No'}"
        if text.startswith(REFINE):
            return f"Fixed. [START]Let me redo it. The answer is {gold[question]}.[END]"
        said = gold[question] if right(gold[question]) else int(gold[question]) + 1
        return f"Step by step... The answer is {said}."
    return answer


def evaluate(options: dict[str, Any], script: Any) -> tuple[dict[str, EvalResult], Any]:
    from plugins.sampler_scripted import ScriptedSampler

    sampler = ScriptedSampler(script=script)
    ev = build_stage(PM.stage("evaluator", "gsm8k").cls, options, StageContext(sampler=sampler, plugins=PM))
    return {r.metric: r for r in ev.evaluate(sampler, None)}, sampler  # type: ignore[attr-defined]


def test_problems_gsm8k_sample_and_held_out() -> None:
    assert len(load_problems()) == 100 and load_problems() == gsm8k_cases()
    picked = load_problems("gsm8k", 10, seed=2)
    assert len(picked) == 10 and picked == load_problems("gsm8k", 10, seed=2)
    assert picked != load_problems("gsm8k", 10, seed=3)
    assert load_problems("held-out") == held_out(200, 0)
    assert load_problems("held-out", 7, 1) == held_out(7, 1)
    assert GSM8K.preflight(GSM8KOptions()) == []


def test_accuracy_counts_right_answers_in_one_batch() -> None:
    problems = held_out(20)
    gold = {p.question: p.answer for p in problems}
    out, sampler = evaluate({"dataset": "held-out", "n": 20}, model(gold, lambda a: int(a) % 2 == 0))
    even = [int(int(p.answer) % 2 == 0) for p in problems]
    assert 0 < sum(even) < 20
    assert list(out) == ["held-out/accuracy"], "no +refine metric without refine"
    acc = out["held-out/accuracy"]
    assert acc.value == pytest.approx(sum(even) / 20) and acc.n == 20
    assert acc.details["item_correct"] == even and acc.details["correct"] == sum(even)
    assert acc.details["dataset"] == "held-out" and acc.details["problems"] == 20
    assert sampler.calls == 1 and sampler.requests_seen == 20


def test_gsm8k_sample_with_the_prompt_template() -> None:
    problems = load_problems("gsm8k", 8, seed=1)
    gold = {p.question: p.answer for p in problems}
    seen: list[SampleRequest] = []
    out, _ = evaluate({"n": 8, "seed": 1}, model(gold, lambda a: True, seen))
    assert list(out) == ["gsm8k/accuracy"] and out["gsm8k/accuracy"].value == 1.0
    assert all((r.messages or ())[0][1].endswith("then end with: The answer is <number>.") for r in seen)
    assert all(r.params.max_tokens == 256 and r.params.temperature == 0.0 for r in seen)


def test_refine_fixes_the_wrong_answers_and_leaves_the_right_ones() -> None:
    problems = held_out(12)
    gold = {p.question: p.answer for p in problems}
    seen: list[SampleRequest] = []
    out, sampler = evaluate({"dataset": "held-out", "n": 12, "refine": {}},
                            model(gold, lambda a: int(a) % 3 == 0, seen))
    wrong = sum(1 for p in problems if int(p.answer) % 3)
    assert 0 < wrong < 12
    assert out["held-out/accuracy"].value == pytest.approx((12 - wrong) / 12), "the plain score is unchanged"
    assert out[ACC + "+refine"].value == 1.0 and out[ACC + "+refine"].n == 12
    assert out[ACC + "+refine"].details["item_correct"] == [1] * 12
    assert out[ACC + "+refine"].details["refine_rounds"] == [
        {"judged": 12, "yes": 12 - wrong, "refined": wrong, "changed": wrong, "empty": 0}]
    assert "refine_rounds" not in out["held-out/accuracy"].details
    assert sum(1 for r in seen if (r.messages or ())[0][1].startswith(REFINE)) == wrong, \
        "answers judged Yes are not refined"
    assert sampler.calls == 3, "answers, critiques, refinements: one batch each"


def test_report_compares_iterations_problem_by_problem(lineage_store: Any) -> None:
    from engine.report import paired_lines

    problems = held_out(20)
    gold = {p.question: p.answer for p in problems}
    base, _ = evaluate({"dataset": "held-out", "n": 20, "refine": {}}, model(gold, lambda a: False))
    later, _ = evaluate({"dataset": "held-out", "n": 20}, model(gold, lambda a: True))
    store = lineage_store
    store.create_run("r", config={}, config_hash="h", code_version="v", loop="score")
    for it, results in ((0, base), (1, later)):
        store.start_iteration("r", it)
        store.add_metrics("r", it, None, list(results.values()))
    (line,) = paired_lines(store, "r")  # iteration 1 has no +refine metric to pair
    assert line == ("gsm8k/held-out/accuracy, iteration 1 vs base: 20/20 against 0/20; 20 gained, 0 lost: "
                    "better (p = 1.91e-06); change +1 [95% CI +1, +1]")
    store.add_metrics("r", 1, None, [EvalResult(evaluator="gsm8k", metric=ACC + "+refine",
                                                value=0.5, n=20, details={"item_correct": [1, 0] * 10})])
    lines = paired_lines(store, "r")
    assert len(lines) == 2 and lines[1].startswith(
        "gsm8k/held-out/accuracy+refine, iteration 1 vs base: 10/20 against 20/20; 0 gained, 10 lost: worse")
