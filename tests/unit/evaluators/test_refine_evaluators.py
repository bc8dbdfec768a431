"""The ``refine`` option of the humaneval, ifeval and longbench-write evaluators: with it each emits
``<metric>+refine`` beside its unchanged metrics, without it none (a scripted model that judges its
first answers No and rewrites them right)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import plugins.evaluator_ifeval as ifeval
from engine.contracts import StageContext
from engine.manager import create_plugin_manager
from engine.records import EvalResult
from engine.sampling.protocol import SampleRequest
from engine.toolkit.humaneval import load_problems
from plugins.evaluator_humaneval import HumanEval, HumanEvalOptions
from plugins.evaluator_longbench import LongBenchWrite, LongBenchWriteOptions
from plugins.evaluator_longbench import load_prompts as longbench_prompts
from plugins.sampler_scripted import ScriptedSampler

PM = create_plugin_manager(entry_points=False)
JUDGE = "You are a strict judge"
REFINE = "Here is an instruction, a response to it, and a critique"


def user(req: SampleRequest) -> str:
    return next(text for role, text in req.messages or () if role == "user")


def self_refining(first: Any, fixed: Any, seen: list[SampleRequest]) -> Any:
    """First answers by ``first(request)``; as a judge always No; as a refiner ``fixed(text)``."""
    def answer(req: SampleRequest, i: int) -> str:
        seen.append(req)
        text = user(req)
        if text.startswith(JUDGE):
            return "It misses the point. Final judgement: No"
        if text.startswith(REFINE):
            return f"I will fix it. [START]{fixed(text)}[END]"
        return str(first(req))
    return answer


def by_metric(results: list[EvalResult]) -> dict[str, EvalResult]:
    return {r.metric: r for r in results}


@pytest.fixture(scope="module")
def sandbox(bubblewrap_sandbox: Any) -> Any:
    return bubblewrap_sandbox


def test_humaneval_refines_the_greedy_answers_only(sandbox: Any) -> None:
    problems = load_problems(subset=2, seed=4)

    def problem_in(text: str) -> dict[str, Any]:
        return max((p for p in problems if p["prompt"] in text), key=lambda p: len(p["prompt"]))

    def first(req: SampleRequest) -> str:  # greedy: wrong; sampled: the canonical body
        p = problem_in(user(req))
        if req.params.temperature > 0:
            return f"{p['prompt']}{p['canonical_solution']}"
        return f"def {p['entry_point']}(*args):\n    return None\n"

    def fixed(text: str) -> str:
        p = problem_in(text)
        return f"```python\n{p['prompt']}{p['canonical_solution']}```"

    seen: list[SampleRequest] = []
    ctx = StageContext(seed=0, sandbox=sandbox, plugins=PM)
    opts = HumanEvalOptions(subset=2, subset_seed=4, n=2, k=[1], refine={})  # type: ignore[arg-type]
    out = by_metric(HumanEval(opts, ctx).evaluate(ScriptedSampler(script=self_refining(first, fixed, seen)),
                                                  None))
    assert list(out) == ["pass@1", "pass@1+refine", "pass@1-n2"]
    assert out["pass@1"].value == 0.0 and out["pass@1+refine"].value == 1.0
    assert out["pass@1-n2"].value == 1.0, "the sampled answers are scored apart from the refined ones"
    assert out["pass@1+refine"].details["refine_rounds"][0]["refined"] == 2
    refines = [user(r) for r in seen if user(r).startswith(REFINE)]
    assert len(refines) == 2 and all(any(p["prompt"] in t for p in problems) for t in refines), \
        "the refiner is shown the HumanEval prompt"
    plain = by_metric(HumanEval(HumanEvalOptions(subset=2, subset_seed=4), ctx).evaluate(
        ScriptedSampler(script=self_refining(first, fixed, [])), None))
    assert list(plain) == ["pass@1"]


def test_ifeval_scores_the_refined_answers_as_the_four_refine_metrics(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    row = next(r for r in ifeval.load_prompts() if r["key"] == 1508)  # "forests", "riddle", no commas
    monkeypatch.setattr(ifeval, "load_prompts", lambda *args: [row])
    good = "A riddle of the forests\nthe lion waits in shade\nhis roar the only answer"
    seen: list[SampleRequest] = []
    script = self_refining(lambda req: "A lion, proud and tall, rests under the trees.", lambda t: good, seen)
    ctx = StageContext(seed=0, plugins=PM, run_dir=tmp_path, iteration=2)
    stage = ifeval.IFEval(ifeval.IFEvalOptions(refine={}), ctx)  # type: ignore[arg-type]
    out = by_metric(stage.evaluate(ScriptedSampler(script=script), None))
    assert list(out) == [*ifeval.METRICS, *(m + "+refine" for m in ifeval.METRICS)]
    assert all(out[m].value == 0.0 for m in ifeval.METRICS)
    assert all(out[m + "+refine"].value == 1.0 for m in ifeval.METRICS)
    assert out["prompt_strict+refine"].details["followed"] == [1508]
    (saved,) = [json.loads(line) for line in (tmp_path / "ifeval" / "iteration-2.jsonl").open()]
    assert saved["refined"] == good and saved["refined_strict"] == [True, True]
    assert saved["strict"] == [False, False]
    plain = ifeval.IFEval(ifeval.IFEvalOptions(save_responses=False), ctx).evaluate(
        ScriptedSampler(script=self_refining(lambda req: good, lambda t: "", [])), None)
    assert [r.metric for r in plain] == list(ifeval.METRICS)


def test_longbench_refine_writes_to_length_and_keeps_the_plain_score() -> None:
    rows = longbench_prompts("en", 2000, n=4, seed=1)

    def asked(text: str) -> int:
        return int(max((r for r in rows if r["prompt"] in text), key=lambda r: len(r["prompt"]))["length"])

    seen: list[SampleRequest] = []
    script = self_refining(lambda req: " ".join(["word"] * (asked(user(req)) // 2)) + ".",
                           lambda text: " ".join(["word"] * asked(text)) + ".", seen)
    stage = LongBenchWrite(LongBenchWriteOptions(n=4, seed=1, refine={"rounds": 2}),  # type: ignore[arg-type]
                           StageContext(seed=0, plugins=PM))
    out = by_metric(stage.evaluate(ScriptedSampler(script=script), None))
    assert out["S_l"].value == pytest.approx(50.0) and out["S_l+refine"].value == pytest.approx(100.0)
    assert out["ratio_median+refine"].value == pytest.approx(1.0)
    rounds = out["S_l+refine"].details["refine_rounds"]
    assert [r["refined"] for r in rounds] == [4, 4] and [r["changed"] for r in rounds] == [4, 0], \
        "round 2 rewrites the same length again: nothing changes"
    assert out["S_l+refine"].details["refine"]["rounds"] == 2
    plain = LongBenchWrite(LongBenchWriteOptions(n=4, seed=1), StageContext(seed=0)).evaluate(
        ScriptedSampler(script=self_refining(lambda req: "word.", lambda t: "", [])), None)
    assert not any(r.metric.endswith("+refine") for r in plain) and len(plain) == 6
