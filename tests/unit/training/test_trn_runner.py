"""The runtime drives a trainer: the SELF demo loop (scripted sampler) with ``trainer: sft`` on a tiny
model records the new model version in lineage with the examples it trained on and its per-step
training metrics."""

from __future__ import annotations

import json
from pathlib import Path

from engine.config import load_config
from engine.lineage.store import LineageStore
from engine.manager import create_plugin_manager
from engine.runtime.run import start_run
from engine.training.protocol import adapter_files_hash

CONFIG = Path(__file__).resolve().parents[3] / "configs" / "demo-scripted.yaml"


def test_loop_records_the_trained_version(tiny_model: str, tmp_path: Path) -> None:
    overrides = [f"output_dir={tmp_path}", "runtime.ray=false", f"model.name={tiny_model}",
                 "trainer.name=sft", "trainer.options.max_steps=1", "trainer.options.max_length=128",
                 "trainer.options.batch_size=2"]
    run_dir = start_run(load_config(CONFIG, overrides), create_plugin_manager(entry_points=False))
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"
    adapters = sorted((run_dir / "adapters").iterdir())
    assert adapters and adapters[0].name == "iter1-policy"
    store = LineageStore.for_run_dir(run_dir)
    try:
        parent = None
        for a in adapters:
            digest = adapter_files_hash(a)
            row = store.get_model_version(f"{tiny_model}+lora-{digest[:12]}")
            assert row is not None and row["adapter_path"] == str(a) and row["checkpoint_hash"] == digest
            assert row["n_trained_on"] > 0 and row["parent_version"] == parent
            parent = row["id"]
            steps = [r for r in store.training_steps(row["run_id"]) if r["model_version"] == row["id"]]
            assert [(r["role"], r["step"]) for r in steps if r["metric"] == "loss"] == [("policy", 1)]
    finally:
        store.close()
