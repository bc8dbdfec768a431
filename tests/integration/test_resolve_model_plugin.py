"""A plugin's ``resolve_model`` hook decides which weights a real run samples and trains from.

The plugin answers for a name the built-in resolver does not know ("house-model") with a directory
of its own (a link to the converted SmolLM2 weights). The run samples with the transformers sampler
and trains a LoRA step, both built by ``build_stage`` with the run's plugin manager: if either
skipped the hook, the unknown alias would fail the run. The records name the plugin's directory.
"""

from __future__ import annotations

import json
import types
from pathlib import Path

import pytest

from engine import hookimpl
from engine.config import parse_config, resolve_config
from engine.lineage import queries
from engine.lineage.store import LineageStore
from engine.manager import create_plugin_manager
from engine.runtime.run import start_run
from engine.sampling.resolver import builtin_resolve, default_cache_dir

pytestmark = pytest.mark.model


def test_a_plugins_resolve_model_answers_in_a_real_run(tmp_path: Path) -> None:
    weights = tmp_path / "house-weights"
    real = builtin_resolve("smollm2-135m-instruct", default_cache_dir())
    weights.symlink_to(real, target_is_directory=True)
    asked: list[str] = []

    def resolve_model(name: str, cache_dir: Path) -> Path | None:
        asked.append(name)
        return weights if name == "house-model" else None

    plugin = types.ModuleType("house_models")
    plugin.resolve_model = hookimpl(resolve_model)  # type: ignore[attr-defined]
    pm = create_plugin_manager(entry_points=False, plugins=[plugin])
    cfg = parse_config({
        "loop": "self", "iterations": 1, "output_dir": str(tmp_path / "runs"), "runtime": {"ray": False},
        "model": {"name": "house-model"}, "data": {"limit": 2},
        "sampler": "transformers",
        "stages": {"respond": {"options": {"max_tokens": 12}},
                   "judge": {"options": {"votes": 1, "max_tokens": 4, "prefix": "Final judgement:",
                                         "tie": "yes"}},
                   "refine": {"options": {"max_tokens": 8}}},
        "trainer": {"name": "sft", "options": {"max_steps": 1, "batch_size": 1}},
    })
    run_dir = start_run(resolve_config(cfg, pm), pm)
    state = json.loads((run_dir / "run.json").read_text())
    assert state["status"] == "finished"
    assert "house-model" in asked
    store = LineageStore.for_run_dir(run_dir)
    try:
        responses = queries.records_of_kind(store, state["run_id"], 1, "response")
        assert responses and all(r["model_version"].startswith("house-weights-") for r in responses)
        assert state.get("model_version", "").startswith("house-model+lora-"), "trained from those weights"
    finally:
        store.close()
