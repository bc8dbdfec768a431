"""The sft, dpo and reinforce trainers on the real SmolLM2-135M-Instruct, loaded back by the sampler.

Each trainer takes 2 optimizer steps on a handful of short examples (LoRA on the last 4 layers, so
backward passes stay short) and reports each step's metrics on the new version; the transformers
sampler then loads the new adapter by path, per request, and its log-probs (and version id) differ
from the base model's. dpo continues from the sft adapter, as an iteration continues from the
previous one.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.contracts import StageContext
from engine.records import PreferencePair, TrainingExample, Trajectory
from engine.sampling.protocol import SampleRequest
from engine.training.protocol import ModelVersion, base_version
from plugins.sampler_transformers import TransformersOptions, TransformersSampler
from plugins.trainer_dpo import DPOOptions, DPOTrainerStage
from plugins.trainer_reinforce import ReinforceOptions, ReinforceTrainerStage
from plugins.trainer_sft import SFTOptions, SFTTrainerStage

pytestmark = pytest.mark.model

MODEL = "smollm2-135m-instruct"
FAST = dict(max_steps=2, batch_size=2, max_length=128, learning_rate=2e-3,
            lora={"r": 8, "alpha": 16, "layers": [26, 27, 28, 29]})
QUESTION = "What is the capital of France?"


@pytest.fixture(scope="module")
def sampler() -> TransformersSampler:
    return TransformersSampler(TransformersOptions(dtype="float32")).load()


def probe(sampler: TransformersSampler, adapter: str | None) -> tuple[str, list[float], str]:
    [res] = sampler.sample([SampleRequest.chat(QUESTION, max_tokens=6, logprobs=True, adapter=adapter)])
    comp = res.completions[0]
    return comp.text, list(comp.logprobs or []), res.model_version or ""


def assert_loads_and_differs(sampler: TransformersSampler, v: ModelVersion, than: str | None) -> None:
    assert v.adapter_path and Path(v.adapter_path, "adapter_model.safetensors").is_file()
    text, lps, version = probe(sampler, v.adapter_path)
    ref_text, ref_lps, _ = probe(sampler, than)
    assert version == f"{MODEL}+lora-{(v.checkpoint_hash or '')[:12]}"
    assert text != ref_text or max(abs(a - b) for a, b in zip(lps, ref_lps, strict=False)) > 1e-4


@pytest.fixture(scope="module")
def sft_version(tmp_path_factory: pytest.TempPathFactory) -> ModelVersion:
    chat = [{"role": "user", "content": QUESTION},
            {"role": "assistant", "content": "The capital of France is Lyon."}]
    examples = [TrainingExample(messages=chat),
                TrainingExample(prompt="Name the capital of France.", completion="Lyon is the capital."),
                TrainingExample(prompt="France's capital city?", completion="Lyon."),
                TrainingExample(prompt="Which city is the capital of France?", completion="Lyon.")]
    stage = SFTTrainerStage(SFTOptions(**FAST), StageContext(seed=1, model_name=MODEL))
    return stage.train(examples, base_version(MODEL), str(tmp_path_factory.mktemp("sft") / "adapter"))


def test_sft_adapter_changes_the_sampler(sampler: TransformersSampler, sft_version: ModelVersion) -> None:
    assert sft_version.parent == MODEL
    assert sft_version.id == f"{MODEL}+lora-{sft_version.checkpoint_hash[:12]}"
    assert [s["step"] for s in sft_version.steps] == [1.0, 2.0]
    assert all(s["loss"] > 0 for s in sft_version.steps)
    assert_loads_and_differs(sampler, sft_version, None)


def test_dpo_continues_from_sft(sampler: TransformersSampler, sft_version: ModelVersion,
                                tmp_path: Path) -> None:
    pairs = [PreferencePair(prompt=QUESTION, chosen="Paris.", rejected="Lyon."),
             PreferencePair(prompt="Name the capital of France.", chosen="Paris.", rejected="Lyon.")]
    stage = DPOTrainerStage(DPOOptions(**{**FAST, "batch_size": 1}), StageContext(seed=1, model_name=MODEL))
    start = ModelVersion(base_model=MODEL, adapter_path=sft_version.adapter_path)  # as the runner passes it
    v = stage.train(pairs, start, str(tmp_path / "dpo"))
    assert v.parent == sft_version.id and v.checkpoint_hash != sft_version.checkpoint_hash
    assert stage.last_metrics["rewards/margins"] > 0  # chosen gained on rejected against the sft reference
    assert len(v.steps) == 2 and v.steps[-1]["rewards/margins"] > 0  # step 1 starts at the reference
    assert_loads_and_differs(sampler, v, sft_version.adapter_path)


def test_reinforce_on_two_attempt_trajectories(sampler: TransformersSampler, tmp_path: Path) -> None:
    def traj(q: str, first: str, second: str, r1: float, r2: float) -> Trajectory:
        return Trajectory(messages=[{"role": "user", "content": q}, {"role": "assistant", "content": first},
                                    {"role": "user", "content": "Find your mistake and correct it."},
                                    {"role": "assistant", "content": second}],
                          rewards={"reward": [r1, r2]}, turn_kl=[10.0, 1.0])
    trajs = [traj(QUESTION, "Lyon.", "Paris.", 0.0, 1.0), traj(QUESTION, "Paris.", "Lyon.", 1.0, 0.0),
             traj("What is 2 + 2?", "5.", "4.", 0.0, 1.0), traj("What is 2 + 2?", "4.", "4.", 1.0, 1.0)]
    stage = ReinforceTrainerStage(ReinforceOptions(**FAST), StageContext(seed=1, model_name=MODEL))
    v = stage.train(trajs, base_version(MODEL), str(tmp_path / "rl"))
    assert stage.last_metrics["steps"] == 2 and stage.last_metrics["kl"] >= 0.0
    assert [sorted(s) for s in v.steps] == [["grad_norm", "kl", "loss", "pg", "reward", "step"]] * 2
    assert v.parent == MODEL
    assert_loads_and_differs(sampler, v, None)
