"""Trainers on Ray: off the driver, with their declared resources, and data-parallel through Ray Train.

On the real SmolLM2-135M-Instruct (float32, LoRA on the last 4 layers, 3 steps of a global batch
of 4): one worker (a Ray task) and two Ray Train workers (2 x 2 rows, gloo) give the same loss per
step. Tolerance: |a - b| <= 1e-3 * max(1, |a|). Measured differences are float noise, at most
2.5e-5 (sft) and 1e-6 (reinforce): each worker pads its rows to its own longest one, so matmul
shapes differ, and the all-reduce sums in another order. A wrong global batch (2 workers x 4 rows)
moves the same losses by 0.1 to 0.3, a hundred times the tolerance. The worker's pid is not the
driver's, and the adapter the worker sends back lands in ``out_dir`` with the version's hash. A
whole run with Ray on trains although ``LoraTrainer.train`` refuses to run in the driver, and a
next training continues from the adapter it landed, whose files go to the worker through the
object store. DPO (slow) matches with ``sft_weight: 0``; TRL's SFT term is each worker's own token
mean, so with it the curves differ slightly (0.3% at step 2 here).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from engine.config import ResolvedStage, load_config
from engine.contracts import StageContext, validate_options
from engine.errors import ConfigError, UserError
from engine.lineage.store import LineageStore
from engine.manager import create_plugin_manager
from engine.records import PreferencePair, Record, TrainingExample, Trajectory
from engine.runtime import training
from engine.runtime.run import start_run
from engine.runtime.training import land, run_training, train_on_ray
from engine.training.lora import LoraTrainer
from engine.training.protocol import ModelVersion, adapter_files_hash, base_version

MODEL = "smollm2-135m-instruct"
FAST = dict(dtype="float32", max_steps=3, batch_size=4, max_length=64, learning_rate=2e-3,
            lora={"r": 8, "alpha": 16, "layers": [26, 27, 28, 29]})
CONFIG = Path(__file__).resolve().parents[2] / "configs" / "demo-scripted.yaml"


@pytest.fixture(scope="module")
def ray_cpus() -> Any:
    """A local Ray with 4 logical CPUs: two workers of a trainer declaring 2 CPUs each."""
    import ray

    from engine.runtime.ray_services import start_ray

    started = start_ray(None, 4, 4)
    yield ray
    if started:
        ray.shutdown()


def trajectory(i: int) -> Trajectory:
    return Trajectory(messages=[{"role": "user", "content": f"What is {i} + {i}?"},
                                {"role": "assistant", "content": f"{2 * i + i % 2}"},
                                {"role": "user", "content": "Find your mistake and correct it."},
                                {"role": "assistant", "content": f"{2 * i}"}],
                      rewards={"reward": [0.0, float(i % 2 == 0)]}, turn_kl=[10.0, 1.0])


EXAMPLES: dict[str, list[Record]] = {
    "sft": [TrainingExample(prompt=f"What is {i} + {i}?", completion=f"{2 * i}.") for i in range(8)],
    "reinforce": [trajectory(i) for i in range(8)],
    "dpo": [PreferencePair(prompt=f"What is {i} + {i}?", chosen=f"{2 * i}.", rejected=f"{2 * i + 1}.")
            for i in range(8)],
}


def bound(name: str, **options: Any) -> ResolvedStage:
    info = create_plugin_manager(entry_points=False).stage("trainer", name)
    return ResolvedStage("trainer", info, validate_options(info.cls, {**FAST, **options}))


@pytest.mark.model
@pytest.mark.parametrize("name", ["sft", "reinforce",
                                  pytest.param("dpo", marks=pytest.mark.slow)])
def test_two_workers_follow_one_workers_loss_curve(ray_cpus: Any, name: str, tmp_path: Path) -> None:
    extra = {"sft_weight": 0.0} if name == "dpo" else {}
    curves = {}
    for n in (1, 2):
        trained = train_on_ray(bound(name, num_workers=n, **extra), StageContext(seed=1, model_name=MODEL),
                               EXAMPLES[name], base_version(MODEL), workers=n)
        assert trained.pid != os.getpid()  # trained on a Ray worker, not in the driver
        out = tmp_path / f"w{n}"
        v = land(trained, str(out))
        assert v.adapter_path == str(out) and v.checkpoint_hash == adapter_files_hash(out)
        assert v.parent == MODEL and [s["step"] for s in v.steps] == [1.0, 2.0, 3.0]
        curves[n] = [s["loss"] for s in v.steps]
    for a, b in zip(curves[1], curves[2], strict=True):
        assert abs(a - b) <= 1e-3 * max(1.0, abs(a)), curves


@pytest.mark.model
def test_a_run_on_ray_trains_off_the_driver(ray_cpus: Any, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a trainer ran in the driver")

    monkeypatch.setattr(LoraTrainer, "train", refuse)  # the driver's copy; Ray workers import their own
    overrides = [f"output_dir={tmp_path}", "iterations=1", "runtime.num_cpus=4", "trainer.name=sft",
                 "trainer.options.max_steps=1", "trainer.options.max_length=64",
                 "trainer.options.batch_size=2", "trainer.options.lora.layers=[29]"]
    run_dir = start_run(load_config(CONFIG, overrides), create_plugin_manager(entry_points=False))
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"
    adapter = run_dir / "adapters" / "iter1-policy"  # landed in the run directory, recorded in lineage
    store = LineageStore.for_run_dir(run_dir)
    try:
        row = store.get_model_version(f"{MODEL}+lora-{adapter_files_hash(adapter)[:12]}")
        assert row is not None and row["adapter_path"] == str(adapter)
    finally:
        store.close()
    # the next training continues from that adapter: its files reach the worker through the object store
    start = ModelVersion(base_model=MODEL, adapter_path=str(adapter))
    trained = train_on_ray(bound("sft", max_steps=1, lora={"layers": [29]}),
                           StageContext(seed=1, model_name=MODEL), EXAMPLES["sft"][:4], start, workers=1)
    assert trained.pid != os.getpid()
    v = land(trained, str(tmp_path / "next"))
    assert v.parent == row["id"] and v.checkpoint_hash not in (None, row["checkpoint_hash"])


def test_a_trainer_the_cluster_cannot_hold_fails_with_a_message(ray_cpus: Any,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(training, "PLACEMENT_TIMEOUT_S", 1.0)
    needs = r"trainer 'sft' needs \{'CPU': 2.0\} x 3 worker.*trainer\.options\.num_workers"
    with pytest.raises(UserError, match=needs):
        train_on_ray(bound("sft", num_workers=3, batch_size=3), StageContext(), EXAMPLES["sft"],
                     base_version(MODEL), workers=3)


def test_num_workers_is_checked_before_anything_runs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"trainer\.options\.num_workers: .*must divide batch_size 4"):
        load_config(CONFIG, ["trainer.name=sft", "trainer.options.num_workers=3"])
    with pytest.raises(UserError, match=r"trainer\.options\.num_workers is 2: .*runtime\.ray true"):
        run_training(bound("sft", num_workers=2), StageContext(), EXAMPLES["sft"], base_version(MODEL),
                     str(tmp_path / "out"), ray_enabled=False)
