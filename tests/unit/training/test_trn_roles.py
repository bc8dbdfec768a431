"""Per-role trainers: ``trainers: {refiner: ...}`` trains the refiner's adapter with its own trainer
while ``trainer`` trains the policy; each role continues from its own previous version; and a
training execution that already finished (a resumed run) is adopted, never run again."""

from __future__ import annotations

import hashlib
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from engine import hookimpl
from engine.config import load_config
from engine.contracts import Stage
from engine.lineage.store import LineageStore
from engine.manager import create_plugin_manager
from engine.records import Record, TrainingExample
from engine.runtime.runner import Runner
from engine.training.protocol import ModelVersion

CONFIG = Path(__file__).resolve().parents[3] / "configs" / "demo-scripted.yaml"
CALLS: list[tuple[str, str | None]] = []


class NoOptions(BaseModel):
    pass


def counting_plugin() -> types.ModuleType:
    class Counting(Stage):
        kind = "trainer"
        name = "counting"
        Options = NoOptions

        def train(self, examples: Sequence[Record], base: ModelVersion, out_dir: str) -> ModelVersion:
            CALLS.append((self.name, base.adapter_path))
            Path(out_dir).mkdir(parents=True)
            digest = hashlib.sha256(f"{self.name}-{len(CALLS)}-{base.adapter_path}".encode()).hexdigest()
            return ModelVersion(base_model=base.base_model, adapter_path=out_dir,
                                checkpoint_hash=digest, parent=base.id)

    class Other(Counting):
        name = "other"

    mod = types.ModuleType("counting_trainers")

    @hookimpl
    def register_trainers() -> list[type]:
        return [Counting, Other]

    mod.register_trainers = register_trainers  # type: ignore[attr-defined]
    return mod


def make_runner(tmp_path: Path, store: LineageStore) -> Runner:
    pm = create_plugin_manager(entry_points=False, plugins=[counting_plugin()])
    resolved = load_config(CONFIG, [f"output_dir={tmp_path}", "trainer.name=counting", "runtime.ray=false",
                                    "trainers.refiner.name=other"], pm)  # in process: CALLS is seen here
    store.create_run("r1", config={}, config_hash="h", code_version="t", loop="self", name=None)
    return Runner("r1", tmp_path, resolved, pm, store, iteration=1)


def test_roles_use_their_trainers_and_resume_adopts(tmp_path: Path) -> None:
    CALLS.clear()
    store = LineageStore.open(f"sqlite:///{tmp_path / 'l.db'}", create=True)
    try:
        runner = make_runner(tmp_path, store)
        examples: list[Any] = [TrainingExample(messages=[{"role": "user", "content": "x"}])]
        policy = runner.train(examples)
        refiner = runner.train(examples, role="refiner")
        assert [c[0] for c in CALLS] == ["counting", "other"]
        assert runner.model_version == policy and runner.versions == {"policy": policy,
                                                                       "refiner": refiner}
        assert set(runner.adapters) == {"policy", "refiner"}
        assert store.get_model_version(str(refiner))["parent_version"] is None  # type: ignore[index]
        # a resumed run: a fresh runner for the same iteration adopts both versions, trains nothing
        again = make_runner(tmp_path, store)
        assert again.train(examples) == policy and again.train(examples, role="refiner") == refiner
        assert len(CALLS) == 2 and again.adapters == runner.adapters
        # the next iteration continues each role from its own adapter
        again.iteration = 2
        again.train(examples, role="refiner")
        assert CALLS[-1] == ("other", runner.adapters["refiner"])
        row = store.get_model_version(again.versions["refiner"])
        assert row is not None and row["parent_version"] == refiner
    finally:
        store.close()
