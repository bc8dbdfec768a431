"""Evaluation is keyed by (evaluator, options, model version): an iteration whose model version did
not change (nothing trained) reuses the earlier result, recorded in lineage as reused, instead of
measuring again (issue 19)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engine.config import parse_config, resolve_config
from engine.lineage import queries
from engine.lineage.store import LineageStore
from engine.manager import create_plugin_manager
from engine.runtime.run import eval_key
from engine.sampling.protocol import SampleRequest
from plugins.evaluator_gsm8k import GSM8K

EVAL = {"name": "gsm8k", "options": {"dataset": "held-out", "n": 5}}


def script(request: SampleRequest, i: int) -> str:
    text = request.messages[-1][1] if request.messages else ""
    if "strict judge" in text:
        return "Final judgement: Yes"
    return "Step by step... The answer is 3."


@pytest.fixture
def prompts(tmp_path: Path) -> str:
    path = tmp_path / "prompts.jsonl"
    path.write_text(json.dumps({"prompt": "Question?"}) + "\n")
    return str(path)


def test_an_unchanged_model_version_reuses_the_evaluation(run_loop: Callable[..., Any], prompts: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str | None] = []
    measure = GSM8K.evaluate

    def counted(self: Any, sampler: Any, model_version: str | None) -> Any:
        calls.append(model_version)
        return measure(self, sampler, model_version)

    monkeypatch.setattr(GSM8K, "evaluate", counted)
    result = run_loop({"loop": "self", "iterations": 2, "data": {"source": prompts, "limit": 1},
                       "stages": {"respond": {"options": {"n": 1}}}, "evaluators": [EVAL]},
                      script=script)
    assert result.state["status"] == "finished" and result.state["iterations_done"] == 2
    assert calls == [None]  # measured once, on the base model; iterations 1 and 2 trained nothing
    assert result.metrics(0) and result.metrics(1) == result.metrics(0) == result.metrics(2)
    store = LineageStore.for_run_dir(result.run_dir)
    try:
        rows = queries.metric_details(store, result.run_id)
        measured = {r["metric"]: r["details"] for r in rows if r["iteration"] == 0}
        for it in (1, 2):
            reused = {r["metric"]: r["details"] for r in rows if r["iteration"] == it}
            assert reused == {m: {**d, "reused_from_iteration": 0} for m, d in measured.items()}
        assert all("reused_from_iteration" not in d for d in measured.values())
    finally:
        store.close()
    (kept,) = result.state["evaluations"].values()  # run.json keeps where it was measured, for resume
    assert kept["iteration"] == 0 and kept["metrics"]


def test_the_key_is_evaluator_options_and_model_version() -> None:
    pm = create_plugin_manager(entry_points=False)

    def bound(options: dict[str, Any]) -> Any:
        data = {"loop": "self", "sampler": {"name": "scripted"},
                "evaluators": [{"name": "gsm8k", "options": options}]}
        return resolve_config(parse_config(data, source="t"), pm, source="t").evaluators[0]

    five, six = bound({"dataset": "held-out", "n": 5}), bound({"dataset": "held-out", "n": 6})
    assert eval_key(five, None) == eval_key(bound({"dataset": "held-out", "n": 5}), None)
    assert eval_key(five, None) != eval_key(six, None)  # other options: measured again
    assert eval_key(five, None) != eval_key(five, "base+lora-abc")  # a trained version: measured again
    assert eval_key(five, "base+lora-abc") != eval_key(five, "base+lora-def")
    # another role's adapter trained (Self-Lengthen's generator) while the policy's version stayed
    gen1, gen2 = {"generator": "base+lora-1"}, {"generator": "base+lora-2"}
    assert eval_key(five, None, gen1) != eval_key(five, None, gen2)
    assert eval_key(five, None, {}) == eval_key(five, None)
