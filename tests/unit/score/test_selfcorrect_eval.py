"""The self-correction evaluator and the McNemar test behind its paired comparisons."""

from __future__ import annotations

import re
from typing import Any

import pytest

from engine.contracts import StageContext, build_stage
from engine.manager import create_plugin_manager
from engine.sampling.protocol import SampleRequest
from engine.toolkit.math_problems import held_out
from engine.toolkit.stats import mcnemar

ANSWERS = {p.question: p.answer for p in held_out(20)}


def wrong_then_right(request: SampleRequest, i: int) -> str:
    question = next(q for q in ANSWERS if q in (request.messages or ())[0][1])
    attempt = sum(1 for role, _ in request.messages or () if role == "assistant")
    right = ANSWERS[question]
    # problems whose answer is even: right, then talked out of it; odd: wrong, then fixed
    if int(right) % 2 == 0:
        return f"The answer is {right if attempt == 0 else int(right) + 1}."
    return f"The answer is {int(right) + 1 if attempt == 0 else right}."


def test_the_evaluator_counts_each_way_an_answer_changes(scripted_sampler: Any) -> None:
    pm = create_plugin_manager(entry_points=False)
    sampler = scripted_sampler(script=wrong_then_right)
    ev = build_stage(pm.stage("evaluator", "self-correction").cls, {"n": 20},
                     StageContext(sampler=sampler, plugins=pm))
    results = {r.metric: r for r in ev.evaluate(sampler, None)}  # type: ignore[attr-defined]
    even = sum(1 for a in ANSWERS.values() if int(a) % 2 == 0)
    assert 0 < even < 20
    assert results["held-out/acc@t1"].value == pytest.approx(even / 20)
    assert results["held-out/acc@t2"].value == pytest.approx((20 - even) / 20)
    assert results["held-out/c->i"].value == pytest.approx(even / 20)
    assert results["held-out/i->c"].value == pytest.approx((20 - even) / 20)
    assert results["held-out/delta"].value == pytest.approx((20 - 2 * even) / 20)
    details = results["held-out/delta"].details
    assert details["correct->incorrect"] == even and len(details["outcomes"]) == 20
    assert sampler.calls == 2, "one batched call per attempt across the 20 episodes"
    assert all(re.match(r"^\d+$", a) for a in ANSWERS.values())


def test_mcnemar() -> None:
    same = mcnemar([1, 0, 1, 0], [1, 0, 1, 0])
    assert same.p_value == 1.0 and "no significant" in same.verdict
    better = mcnemar([0] * 6 + [1] * 4, [1] * 10)
    assert (better.a_only, better.b_only) == (0, 6) and better.p_value == pytest.approx(2 / 64)
    assert better.verdict.startswith("better")
    mixed = mcnemar([1, 0, 1, 0, 1], [0, 1, 1, 1, 0])  # 2 lost, 2 gained: a coin would do this
    assert mixed.p_value == 1.0
    with pytest.raises(ValueError):
        mcnemar([1], [1, 0])


def test_report_compares_each_iteration_with_the_base_item_by_item(lineage_store: Any) -> None:
    from engine.report import paired_lines

    store = lineage_store
    store.create_run("r", config={}, config_hash="h", code_version="v", loop="score")
    base = [[0, 0]] * 10 + [[1, 1]] * 10
    later = [[0, 1]] * 10 + [[1, 1]] * 10  # attempt 2 fixed the 10 that attempt 1 missed
    from engine.records import EvalResult

    for it, outcomes in ((0, base), (1, later)):
        store.start_iteration("r", it)
        store.add_metrics("r", it, None, [EvalResult(evaluator="self-correction", metric="held-out/acc@t1",
                                                     value=0.5, n=20, details={"outcomes": outcomes})])
    one, two = paired_lines(store, "r")
    assert "attempt 1, iteration 1 vs base: 10/20 against 10/20; 0 gained, 0 lost: no significant" in one
    assert "attempt 2, iteration 1 vs base: 20/20 against 10/20; 10 gained, 0 lost: better (p = 0.00195)" \
        in two
