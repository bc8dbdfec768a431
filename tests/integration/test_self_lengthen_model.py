"""Self-Lengthen end to end on the real SmolLM2 (transformers sampler serving the generator and
extender adapters, local Ray, SQLite, TRL SFT for each adapter, LongBench-Write), small sizes.

Asserts what must hold whatever the small model writes: every drafted task came from a
self-instructed candidate the model judged Yes; every draft has one final text and its rounds in
lineage, each round with an accept decision (and a reason when rejected); each adapter that got
examples trained, and iteration 2 drafts with the generator and extends with the extender that
iteration 1 made; LongBench-Write is measured for the base model and after each iteration.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from engine.lineage import queries
from engine.lineage.store import LineageStore

SMALL = ["stages.instruct.options.count=6", "stages.draft.options.max_tokens=64",
         "stages.extend.options.max_tokens=48", "stages.extend.options.rounds=1",
         "trainers.generator.options.max_steps=1", "trainers.extender.options.max_steps=1",
         "trainers.generator.options.max_length=512", "trainers.extender.options.max_length=512",
         "evaluators.0.options.n=4", "evaluators.0.options.max_tokens=64"]

pytestmark = [pytest.mark.model, pytest.mark.slow]  # minutes on 2 cores: CI runs it


def _meta(row: Any) -> dict[str, Any]:
    payload = row["payload"] if isinstance(row["payload"], dict) else json.loads(row["payload"])
    return dict(payload.get("meta") or {})


def test_self_lengthen_on_smollm2(finished_run: Any) -> None:
    run_dir, run_id = finished_run("self-lengthen.yaml", SMALL)
    with LineageStore.for_run_dir(run_dir) as store:
        funnel = {(r["iteration"], r["role"]): r["n_out"] for r in queries.funnel(store, run_id)}
        for it in (1, 2):
            assert funnel[(it, "instruct")] == 6
            kept = funnel.get((it, "keep"), 0)
            assert kept > 0, "the model judged some instructions suitable"
            assert funnel[(it, "tasks")] == kept == funnel[(it, "draft")] == funnel[(it, "extend")]
            refinements = queries.records_of_kind(store, run_id, it, "refinement")
            finals = [r for r in refinements if "kept" in _meta(r)]
            rounds = [r for r in refinements if "round" in _meta(r)]
            assert len(finals) == funnel[(it, "draft")]
            nonempty = [f for f in finals if _meta(f)["reason"] != "empty draft"]
            assert len(rounds) == len(nonempty), "one round per non-empty draft, in lineage"
            for r in rounds:
                meta = _meta(r)
                assert isinstance(meta["accepted"], bool) and (meta["accepted"] or meta["reason"])
            for f in finals:
                assert _meta(f)["kept"] or _meta(f)["reason"], "a text not kept says why"
        metrics = {(m["iteration"], m["metric"]) for m in queries.metrics(store, run_id)}
        assert {(it, "S_l") for it in (0, 1, 2)} <= metrics
        trained = {role for (it, role) in funnel if it == 1 and role.startswith("train:")}
        if funnel.get((1, "examples:generator")):
            assert "train:generator" in trained and "train:extender" in trained
            reused = [d for d in queries.metric_details(store, run_id) if d["iteration"] == 1
                      and "reused_from_iteration" in (d["details"] or {})]
            assert not reused, "the generator's adapter changed: its evaluation is measured again"
            drafts2 = {r["model_version"] for r in queries.records_of_kind(store, run_id, 2, "response")
                       if "words" not in _meta(r)}
            assert any("+lora-" in (v or "") for v in drafts2), "iteration 2 samples a trained adapter"
