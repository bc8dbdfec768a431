"""SCoRe end to end on the real SmolLM2 (transformers sampler, local Ray, SQLite, the reinforce
trainer on the LoRA adapter, the self-correction evaluator), small sizes: Stage I then Stage II.

Asserts what must hold whatever the small model writes: every episode is two turns in lineage, the
second linked to the first; each policy step trains, and the next step samples from the adapter the
step before it made (on-policy, no reload); the shaped rewards follow the stage (Stage I: nothing
on attempt 1 and a 10x KL on it; Stage II: r1 and r2 + alpha (r2 - r1)); the evaluator measures
attempt 1 and 2 for the base model and after each iteration.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from engine.lineage import queries
from engine.lineage.store import LineageStore

SMALL = ["loop.options.policy_steps=2", "loop.options.problems_per_step=6",
         "stages.env.options.max_tokens=40", "trainer.options.batch_size=6", "evaluators.0.options.n=12",
         "evaluators.0.options.max_tokens=40"]

pytestmark = [pytest.mark.model, pytest.mark.slow]  # minutes on 2 cores: CI runs it


def _payload(row: Any) -> dict[str, Any]:
    payload = row["payload"]
    return dict(json.loads(payload) if isinstance(payload, str) else payload)


def test_score_on_smollm2(finished_run: Any) -> None:
    run_dir, run_id = finished_run("score.yaml", SMALL)
    with LineageStore.for_run_dir(run_dir) as store:
        funnel = {(r["iteration"], r["role"]): r["n_out"] for r in queries.funnel(store, run_id)}
        for it, stage in ((1, "I"), (2, "II")):
            turns = queries.records_of_kind(store, run_id, it, "turn")
            trajectories = queries.records_of_kind(store, run_id, it, "trajectory")
            rolled = [t for t in trajectories if _payload(t).get("turn_kl") is None]
            shaped = [t for t in trajectories if _payload(t).get("turn_kl") is not None]
            assert len(rolled) == 12 and len(turns) == 24, "2 steps x 6 two-turn episodes"
            links = queries.parents_of(store, [t["id"] for t in turns])
            second = [t for t in turns if _payload(t)["index"] == 1]
            assert all(links[t["id"]][0]["role"] == "previous" for t in second), "turn 2 follows turn 1"
            for t in shaped:
                p = _payload(t)
                r1, r2 = p["rewards"]["reward"]
                if stage == "I":
                    assert p["rewards"]["score"] == [0.0, r2] and p["turn_kl"] == [10.0, 1.0]
                else:
                    assert p["rewards"]["score"] == [r1, r2 + 10.0 * (r2 - r1)] and p["turn_kl"] == [1.0, 1.0]
            assert funnel[(it, "train:policy:step0")] == 1 and funnel[(it, "train:policy:step1")] == 1
            by_step: dict[str, set[str]] = {}
            for t in rolled:  # the env:step0 and env:step1 executions
                by_step.setdefault(t["execution_id"], set()).add(t["model_version"])
            assert sorted(len(v) for v in by_step.values()) == [1, 1], "a step samples one model version"
            first, second = by_step.values()
            assert first != second, "step 1 samples the adapter step 0 trained"
        metrics = {(m["iteration"], m["metric"]) for m in queries.metrics(store, run_id)}
        for it in (0, 1, 2):
            assert {(it, f"held-out/{k}") for k in ("acc@t1", "acc@t2", "delta", "i->c", "c->i")} <= metrics
