"""The LoRA trainer base: one template ``train()`` (the policy resolved through the plugins'
``resolve_model`` hook), per-step metrics on the new version, and reproducible version ids (the
saved adapter config is normalised, and the trainers and samplers hash adapters one way)."""

from __future__ import annotations

import json
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from engine import hookimpl
from engine.contracts import StageContext, check_stage_class
from engine.manager import create_plugin_manager
from engine.records import Record, TrainingExample
from engine.sampling.resolver import adapter_hash, model_version
from engine.training.lora import LoraTrainer, TrainOptions, normalise_adapter_config
from engine.training.protocol import ModelVersion, Steps, adapter_files_hash, base_version, version_id
from plugins.trainer_sft import SFTOptions, SFTTrainerStage

CONFIG = {"r": 4, "lora_alpha": 8, "peft_type": "LORA", "layers_to_transform": None,
          "target_modules": ["v_proj", "q_proj", "o_proj", "k_proj"], "alpha_pattern": {}}


def adapter_dir(path: Path, config: dict[str, Any]) -> Path:
    path.mkdir()
    (path / "adapter_config.json").write_text(json.dumps(config))
    (path / "adapter_model.safetensors").write_bytes(b"same weights")
    return path


def test_configs_differing_in_order_hash_the_same_once_normalised(tmp_path: Path) -> None:
    shuffled = dict(reversed(list(CONFIG.items())), target_modules=["k_proj", "o_proj", "q_proj", "v_proj"])
    a, b = adapter_dir(tmp_path / "a", CONFIG), adapter_dir(tmp_path / "b", shuffled)
    assert adapter_files_hash(a) != adapter_files_hash(b)
    normalise_adapter_config(a)
    normalise_adapter_config(b)
    assert (a / "adapter_config.json").read_bytes() == (b / "adapter_config.json").read_bytes()
    assert json.loads((a / "adapter_config.json").read_text())["target_modules"] == [
        "k_proj", "o_proj", "q_proj", "v_proj"]
    assert adapter_files_hash(a) == adapter_files_hash(b)
    # one scheme: the samplers' version ids are the trainers' ids
    assert adapter_hash(str(a)) == adapter_files_hash(a)[:12] == adapter_hash(str(b))
    assert model_version("m", str(a)) == version_id("m", adapter_files_hash(a))
    assert model_version("m", str(a)) == f"m+lora-{adapter_hash(str(a))}"


def test_steps_are_no_part_of_the_id() -> None:
    plain = ModelVersion(base_model="m", checkpoint_hash="ab" * 32)
    with_steps = ModelVersion(base_model="m", checkpoint_hash="ab" * 32, steps=[{"step": 1.0, "loss": 2.0}])
    assert plain.id == with_steps.id == "m+lora-" + "ab" * 6 and plain.steps == []


class Echo(LoraTrainer[TrainOptions]):
    """A trainer that fills in only rows and fit: it takes no optimizer step."""

    name = "echo"
    accepts = ("training_example",)

    def rows(self, examples: Sequence[Record]) -> list[Any]:
        return [r.id for r in examples]

    def fit(self, model: Any, tokenizer: Any, rows: list[Any], tmpdir: str) -> Steps:
        assert Path(tmpdir).is_dir() and tokenizer.pad_token is not None
        self.seen = (rows, [n for n, p in model.named_parameters() if p.requires_grad])
        return [{"step": float(i + 1), "loss": 1.0 / (i + 1)} for i in range(len(rows))]


def test_the_template_resolves_the_model_through_the_plugins(tiny_model: str, tmp_path: Path) -> None:
    asked: list[str] = []
    mod = types.ModuleType("tiny_resolver")

    @hookimpl(tryfirst=True)
    def resolve_model(name: str, cache_dir: Path) -> Path | None:
        asked.append(name)
        return Path(tiny_model) if name == "tiny-alias" else None

    mod.resolve_model = resolve_model  # type: ignore[attr-defined]
    pm = create_plugin_manager(entry_points=False, plugins=[mod])
    stage = Echo(TrainOptions(lora={"r": 2, "target_modules": ["v_proj", "q_proj"]}),
                 StageContext(seed=3, plugins=pm))
    assert check_stage_class(Echo, "trainer") == [] and Echo.Options is TrainOptions
    examples = [TrainingExample(prompt="Q?", completion="A."), TrainingExample(prompt="Q2?", completion="B.")]
    v = stage.train(examples, base_version("tiny-alias"), str(tmp_path / "echo"))
    assert asked == ["tiny-alias"] and stage.seen[0] == [e.id for e in examples]
    assert stage.seen[1] and all("lora_" in n for n in stage.seen[1])
    assert v.steps == [{"step": 1.0, "loss": 1.0}, {"step": 2.0, "loss": 0.5}]
    assert stage.last_metrics == {"step": 2.0, "loss": 0.5}
    cfg = json.loads((tmp_path / "echo" / "adapter_config.json").read_text())
    assert cfg["target_modules"] == ["q_proj", "v_proj"] and cfg["base_model_name_or_path"] == "tiny-alias"
    assert v.checkpoint_hash == adapter_files_hash(tmp_path / "echo") and v.parent == "tiny-alias"
    with pytest.raises(ValueError, match="echo got no examples"):
        stage.train([], base_version("tiny-alias"), str(tmp_path / "none"))


def test_trainer_options_are_typed_by_the_generic_base() -> None:
    stage = SFTTrainerStage()
    assert SFTTrainerStage.Options is SFTOptions and isinstance(stage.options, SFTOptions)
    assert stage.options.completion_only_loss and SFTTrainerStage.accepts == (
        "training_example", "response", "preference_pair")
