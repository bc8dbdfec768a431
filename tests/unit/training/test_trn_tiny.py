"""The three trainers end to end on a tiny random Llama: versions, hashes, continuation, determinism."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.contracts import StageContext
from engine.records import PreferencePair, TrainingExample, Trajectory
from engine.sampling.resolver import adapter_hash
from engine.training.protocol import ModelVersion, adapter_files_hash, base_version
from plugins.trainer_dpo import DPOOptions, DPOTrainerStage
from plugins.trainer_reinforce import ReinforceOptions, ReinforceTrainerStage
from plugins.trainer_sft import SFTOptions, SFTTrainerStage

FAST = dict(max_steps=2, batch_size=2, max_length=64, learning_rate=1e-2, lora={"r": 4, "alpha": 8})
EXAMPLES = [TrainingExample(prompt=f"What is {i} + {i}?", completion=f"{2 * i}.") for i in range(3)]


def sft(seed: int = 1, **opts: object) -> SFTTrainerStage:
    return SFTTrainerStage(SFTOptions(**{**FAST, **opts}), StageContext(seed=seed))


def test_sft_makes_a_version_then_continues_from_it(tiny_model: str, tmp_path: Path) -> None:
    v1 = sft().train(EXAMPLES, base_version(tiny_model), str(tmp_path / "v1"))
    assert sorted(p.name for p in Path(v1.adapter_path or "").iterdir()) == [
        "adapter_config.json", "adapter_model.safetensors"]
    assert v1.checkpoint_hash == adapter_files_hash(tmp_path / "v1")
    assert v1.checkpoint_hash[:12] == adapter_hash(str(tmp_path / "v1"))  # the sampler's version hash
    assert v1.id == f"{tiny_model}+lora-{v1.checkpoint_hash[:12]}" and v1.parent == tiny_model
    assert [s["step"] for s in v1.steps] == [1.0, 2.0] and all(s["loss"] > 0 for s in v1.steps)
    # the runtime passes the previous adapter by path (no hash): training continues from it
    start = ModelVersion(base_model=tiny_model, adapter_path=v1.adapter_path)
    v2 = sft().train(EXAMPLES, start, str(tmp_path / "v2"))
    assert v2.parent == v1.id and v2.checkpoint_hash != v1.checkpoint_hash
    assert not list(tmp_path.glob(".*tmp*"))  # saved atomically, nothing left behind


def test_same_seed_same_adapter(tiny_model: str, tmp_path: Path) -> None:
    a = sft(seed=5).train(EXAMPLES, base_version(tiny_model), str(tmp_path / "a"))
    c = sft(seed=6).train(EXAMPLES, base_version(tiny_model), str(tmp_path / "c"))
    again = sft(seed=5).train(EXAMPLES, base_version(tiny_model), str(tmp_path / "a"))  # a resumed step
    assert a.checkpoint_hash == again.checkpoint_hash != c.checkpoint_hash


def test_quiet_by_default(tiny_model: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    sft().train(EXAMPLES[:2], base_version(tiny_model), str(tmp_path / "q"))
    out, err = capfd.readouterr()
    assert "train_loss" not in out and "%|" not in err and "it/s" not in err


def test_sft_says_when_truncation_leaves_nothing_to_learn(tiny_model: str, tmp_path: Path) -> None:
    long = [TrainingExample(messages=[{"role": "user", "content": "word " * 200},
                                      {"role": "assistant", "content": "ok"}])]
    with pytest.raises(ValueError, match="none of the 1 examples has a completion token within max_len"):
        sft(max_length=32).train(long, base_version(tiny_model), str(tmp_path / "t"))


@pytest.mark.parametrize("reference", ["previous", "base"])
def test_dpo_with_sft_term(tiny_model: str, tmp_path: Path, reference: str) -> None:
    pairs = [PreferencePair(prompt=f"What is {i} + {i}?", chosen=f"{2 * i}.", rejected=f"{2 * i + 1}.")
             for i in range(2)]
    stage = DPOTrainerStage(DPOOptions(**FAST, reference=reference), StageContext(seed=1))
    v = stage.train(pairs, base_version(tiny_model), str(tmp_path / "dpo"))
    assert v.checkpoint_hash == adapter_files_hash(tmp_path / "dpo") and v.parent == tiny_model
    assert "rewards/margins" in stage.last_metrics
    assert len(v.steps) == 2 and all({"loss", "rewards/chosen", "rewards/margins"} <= set(s) for s in v.steps)
    with pytest.raises(TypeError, match="preference_pair"):
        stage.train(EXAMPLES, base_version(tiny_model), str(tmp_path / "bad"))


def trajectories() -> list[Trajectory]:
    return [Trajectory(messages=[{"role": "user", "content": f"What is {i} + {i}?"},
                                 {"role": "assistant", "content": f"{2 * i + i % 2}"},
                                 {"role": "user", "content": "Find your mistake and correct it."},
                                 {"role": "assistant", "content": f"{2 * i}"}],
                       rewards={"r2": [0.0, float(i % 2 == 0)], "reward": float(i % 2 == 0)},
                       turn_kl=[10.0, 1.0]) for i in range(4)]


def test_reinforce_steps_with_kl_to_base(tiny_model: str, tmp_path: Path) -> None:
    def run(seed: int, out: str, base: ModelVersion, **opts: object) -> tuple[ModelVersion, dict]:
        stage = ReinforceTrainerStage(ReinforceOptions(**{**FAST, "reward_field": "r2", **opts}),
                                      StageContext(seed=seed))
        return stage.train(trajectories(), base, str(tmp_path / out)), stage.last_metrics

    v1, m1 = run(1, "r1", base_version(tiny_model))
    assert m1["steps"] == 2 and m1["kl"] >= 0.0 and m1["reward_mean"] == 0.25
    assert v1.checkpoint_hash == adapter_files_hash(tmp_path / "r1")
    assert [s["step"] for s in v1.steps] == [1.0, 2.0]
    assert all({"loss", "reward", "kl", "pg", "grad_norm"} <= set(s) for s in v1.steps)
    assert v1.steps[-1]["kl"] == m1["kl"] and sum(s["reward"] for s in v1.steps) / 2 == m1["reward_mean"]
    same, _ = run(1, "r1b", base_version(tiny_model))
    assert same.checkpoint_hash == v1.checkpoint_hash
    # continuing from v1, the policy already differs from the base model: the KL term is positive
    v2, m2 = run(1, "r2", v1, max_steps=1)
    assert v2.parent == v1.id and m2["kl"] > 0.0
    with pytest.raises(KeyError, match="no reward"):
        run(1, "r3", base_version(tiny_model), reward_field="missing")
