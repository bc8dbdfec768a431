"""SPaR end to end on the real SmolLM2 (transformers sampler serving the policy and refiner adapters,
local Ray, SQLite, TRL DPO for the actor and SFT for the refiner, IFEval), small sizes.

Asserts what must hold whatever the small model writes: every failing answer is the root of a
searched tree whose nodes and their critiques are in lineage; every pair joins a final node above the
gate to its root; both roles train in iteration 1 and iteration 2 samples from the new adapters;
IFEval and the held-out constraints are measured for the base model and after each iteration.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from engine.lineage import queries
from engine.lineage.store import LineageStore
from plugins.filter_nonanswer import NonAnswerOptions, non_answer

SMALL = ["data.limit=4", "stages.respond.options.n=2", "stages.respond.options.max_tokens=48",
         "stages.judge.options.judge.options.votes=3", "stages.judge.options.judge.options.max_tokens=48",
         "stages.judge.options.judge.options.tie='no'",  # undecided judgements fail: the search always runs
         "stages.refine.options.depth=1", "stages.refine.options.gate=0.0", "loop.options.gate=0.0",
         "stages.refine.options.refine.max_tokens=48", "stages.refine.options.judge.max_tokens=48",
         "trainers.policy.options.max_steps=1", "trainers.refiner.options.max_steps=1",
         "evaluators.0.options.subset=4", "evaluators.0.options.max_tokens=48",
         "evaluators.1.options.n=4", "evaluators.1.options.max_tokens=48"]

pytestmark = [pytest.mark.model, pytest.mark.slow]  # minutes on 2 cores: CI runs it


def test_spar_on_smollm2(finished_run: Any) -> None:
    run_dir, run_id = finished_run("spar.yaml", SMALL)
    with LineageStore.for_run_dir(run_dir) as store:
        funnel = {(r["iteration"], r["role"]): r["n_out"] for r in queries.funnel(store, run_id)}
        for it in (1, 2):
            assert funnel[(it, "failing")] > 0, "with tie=no some answers fail"
            assert funnel[(it, "refine")] == funnel[(it, "failing")], "one final node per root"
            nodes = queries.records_of_kind(store, run_id, it, "refinement")
            assert len(nodes) == 2 * funnel[(it, "failing")], "branch 2, depth 1: the tree is in lineage"
            critiques = queries.records_of_kind(store, run_id, it, "critique")
            assert len(critiques) == funnel[(it, "judge")] + len(nodes), "every node judged"
            pairs = queries.records_of_kind(store, run_id, it, "preference_pair")
            for pair in pairs:
                up = queries.ancestors(store, pair["id"], max_depth=1)
                edges = {row["role"]: row["kind"] for row in up}
                assert edges == {"chosen": "refinement", "rejected": "response"}
                body = json.loads(pair["payload"]) if isinstance(pair["payload"], str) else pair["payload"]
                assert non_answer(body["chosen"], None, NonAnswerOptions()) is None, "chosen: an answer"
        for it in (1, 2):  # each role trains exactly when its stage handed it examples
            assert (funnel.get((it, "train:policy")) == 1) == (funnel[(it, "pairs")] > 0)
            assert (funnel.get((it, "train:refiner")) == 1) == (funnel[(it, "rft")] > 0)
        assert any(funnel[(it, "pairs")] + funnel[(it, "rft")] for it in (1, 2)), "something trained"
        v1 = {r["model_version"] for r in queries.records_of_kind(store, run_id, 1, "response")}
        v2 = {r["model_version"] for r in queries.records_of_kind(store, run_id, 2, "response")}
        if funnel[(1, "pairs")]:
            assert v1.isdisjoint(v2) and all("+lora-" in v for v in v2), "iteration 2 samples the new actor"
            first = queries.records_of_kind(store, run_id, 2, "response")[0]
            details = queries.model_version_of(store, first["id"])
            assert details is not None and details.get("adapter_path"), "the sampled version is registered"
        metrics = {(m["evaluator"], m["iteration"], m["metric"]) for m in queries.metrics(store, run_id)}
        for evaluator in ("ifeval", "constraints"):
            assert {(evaluator, it, "prompt_strict") for it in (0, 1, 2)} <= metrics, metrics
