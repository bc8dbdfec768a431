"""The longbench-write evaluator on a scripted model, its paired length test and length.png."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from engine.contracts import StageContext
from engine.records import EvalResult
from engine.sampling.protocol import SampleRequest
from engine.toolkit.lengthen import length_score
from engine.toolkit.stats import paired_permutation
from plugins.evaluator_longbench import LongBenchWrite, LongBenchWriteOptions, load_prompts


def requested(req: SampleRequest) -> int:
    prompt = (req.messages or ())[0][1]
    return next(int(r["length"]) for r in load_prompts("all", 100_000) if r["prompt"] == prompt)


def evaluate(scripted_sampler: Any, share: float, **options: Any) -> dict[str, EvalResult]:
    sampler = scripted_sampler(script=lambda req, i: " ".join(["word"] * int(share * requested(req))) + ".")
    stage = LongBenchWrite(LongBenchWriteOptions(**options), StageContext(seed=0))
    return {r.metric: r for r in stage.evaluate(sampler, "v0")}


def test_prompts_filter_by_subset_and_requested_length() -> None:
    english = load_prompts("en", 2000)
    assert len(english) == 40 and all(r["length"] <= 2000 for r in english)
    assert [r["length"] for r in english] == sorted(r["length"] for r in english)
    assert not any(re.search(r"[\u4e00-\u9fff]", r["prompt"]) for r in english)
    assert len(load_prompts("all", 100_000)) == 120
    picked = load_prompts("en", 2000, n=10, seed=3)
    assert len(picked) == 10 and picked == load_prompts("en", 2000, n=10, seed=3)
    assert {r["prompt"] for r in picked} <= {r["prompt"] for r in english}


def test_exact_length_scores_100_and_half_length_scores_0(scripted_sampler: Any) -> None:
    exact = evaluate(scripted_sampler, 1.0, n=8)
    assert exact["S_l"].value == pytest.approx(100.0) and exact["ratio_median"].value == pytest.approx(1.0)
    items = exact["S_l"].details["items"]
    assert len(items) == 8 and all(r[0] == r[1] for r in items) and exact["S_l"].n == 8
    half = evaluate(scripted_sampler, 0.5, n=8)
    assert half["S_l"].value == pytest.approx(50.0), "half the words: 100 (1 - (2 - 1) / 2)"
    assert half["words_median"].value == pytest.approx(exact["words_median"].value / 2, rel=0.02)
    assert exact["hit_token_limit"].value == 0.0


def test_length_score_formula() -> None:
    assert length_score(100, 100) == 100.0
    assert length_score(100, 250) == pytest.approx(50.0)  # 1 - (2.5 - 1)/3
    assert length_score(100, 80) == pytest.approx(100 * (1 - (100 / 80 - 1) / 2))
    assert length_score(100, 0) == 0.0 and length_score(100, 1000) == 0.0


def test_cut_answers_are_counted(scripted_sampler: Any) -> None:
    from plugins.sampler_scripted import ScriptedOptions, ScriptedSampler

    def script(req: SampleRequest, i: int) -> str:  # the two shortest requests are answered in full
        return " ".join(["word"] * (3 if requested(req) <= 150 else 200)) + "."

    sampler = ScriptedSampler(ScriptedOptions(max_tokens=True), script=script)
    stage = LongBenchWrite(LongBenchWriteOptions(max_words=200, max_tokens=50), StageContext(seed=0))
    out = {r.metric: r for r in stage.evaluate(sampler, None)}
    cut = [r[3] for r in out["S_l"].details["items"]]
    assert cut == [0, 0, 0, 1, 1, 1], "100, 100, 150 answered; the three 200-word prompts cut"
    assert out["hit_token_limit"].value == pytest.approx(0.5)


def test_paired_permutation_detects_a_consistent_shift() -> None:
    a = [0.1 * k for k in range(30)]
    assert paired_permutation(a, [x + 0.5 for x in a]).verdict.startswith("higher")
    assert paired_permutation(a, a).p_value == 1.0
    noisy = paired_permutation(a, [x + (0.3 if k % 2 else -0.3) for k, x in enumerate(a)])
    assert noisy.verdict.startswith("no significant")
    with pytest.raises(ValueError):
        paired_permutation([1.0], [1.0, 2.0])


def test_report_tests_lengths_and_plots_them(lineage_store: Any, tmp_path: Path) -> None:
    from engine.report import paired_lines, plot_report

    store = lineage_store
    store.create_run("r", config={}, config_hash="h", code_version="v", loop="self-lengthen")
    base = [[100 * k, 50 * k, 0.0, 0] for k in range(1, 21)]
    longer = [[100 * k, 100 * k, 100.0, 0] for k in range(1, 21)]
    for it, items in ((0, base), (1, longer)):
        store.start_iteration("r", it)
        result = EvalResult(evaluator="longbench-write", metric="S_l", value=1.0, n=20,
                            details={"items": items})
        store.add_metrics("r", it, None, [result])
    (line,) = paired_lines(store, "r")
    assert "longbench-write length, iteration 1 vs base on 20 prompts" in line
    assert "x2.00" in line and "higher (p = " in line
    written = plot_report(store, "r", tmp_path)
    assert tmp_path / "length.png" in written and (tmp_path / "length.png").stat().st_size > 1000
