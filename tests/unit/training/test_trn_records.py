"""What each trainer accepts: record kinds -> TRL rows / token spans, options and registration."""

from __future__ import annotations

import subprocess
import sys

import pytest

from engine.contracts import check_stage_class
from engine.manager import create_plugin_manager
from engine.records import Critique, PreferencePair, Refinement, Response, TrainingExample, Trajectory
from engine.training.protocol import Trainer
from plugins import trainer_dpo, trainer_reinforce, trainer_sft
from plugins.trainer_reinforce import Encoded, advantages, encode

USER = {"role": "user", "content": "Q?"}


def test_trainers_registered_with_options() -> None:
    pm = create_plugin_manager(entry_points=False)
    trainers = pm.stages("trainer")
    for name in ("sft", "dpo", "reinforce"):
        cls = trainers[name].cls
        assert check_stage_class(cls, "trainer") == [] and isinstance(cls(), Trainer)
        assert cls.resources.num_cpus >= 1
    dpo = trainers["dpo"].cls.Options()
    assert (dpo.beta, dpo.sft_weight, dpo.reference) == (0.1, 0.1, "previous")
    rl = trainers["reinforce"].cls.Options()
    assert rl.reward_field == "reward" and rl.kl_beta > 0 and rl.baseline == "mean"
    with pytest.raises(ValueError, match="extra"):
        trainers["sft"].cls.Options(unknown=1)


def test_sft_rows_from_each_kind() -> None:
    chat = TrainingExample(messages=[USER, {"role": "assistant", "content": "A."}])
    pc = TrainingExample(prompt="Q?", completion="A.")
    resp = Response(text="A.", prompt="Q?")
    ref = Refinement(text="A.", prompt="Q?")
    pair = PreferencePair(prompt="Q?", chosen="A.", rejected="B.")
    rows = [trainer_sft.to_row(r) for r in (chat, pc, resp, ref, pair)]
    assert all(r == {"prompt": [USER], "completion": [{"role": "assistant", "content": "A."}]} for r in rows)
    with pytest.raises(TypeError, match="not 'critique'"):
        trainer_sft.to_row(Critique(verdict=True))
    with pytest.raises(ValueError, match="last message"):
        trainer_sft.to_row(TrainingExample(messages=[USER]))
    with pytest.raises(ValueError, match="neither"):
        trainer_sft.to_row(TrainingExample(prompt="Q?"))


def test_dpo_rows_only_from_pairs() -> None:
    row = trainer_dpo.to_row(PreferencePair(prompt="Q?", chosen="A.", rejected="B."))
    assert row["prompt"] == [USER]
    assert row["chosen"][0]["content"] == "A." and row["rejected"][0]["content"] == "B."
    with pytest.raises(TypeError, match="preference_pair"):
        trainer_dpo.to_row(TrainingExample(prompt="Q?", completion="A."))


def two_attempts(r: float | list[float], turn_kl: list[float] | None = None) -> Trajectory:
    return Trajectory(messages=[USER, {"role": "assistant", "content": "3"},
                                {"role": "user", "content": "Find your mistake and correct it."},
                                {"role": "assistant", "content": "It is 2."}],
                      rewards={"reward": r} if not isinstance(r, list) else {"r2": r}, turn_kl=turn_kl)


def test_encode_finds_each_assistant_turn(tokenizer) -> None:  # noqa: ANN001
    e = encode(tokenizer, two_attempts(1.0, [10.0, 1.0]), "reward", 256)
    assert [tokenizer.decode(e.ids[s:t]).strip() for s, t in e.spans] == ["3<|im_end|>", "It is 2.<|im_end|>"]
    assert e.rewards == [1.0, 1.0] and e.kl_scale == [10.0, 1.0]
    per_turn = encode(tokenizer, two_attempts([0.0, 1.0]), "r2", 256)
    assert per_turn.rewards == [0.0, 1.0] and per_turn.kl_scale == [1.0, 1.0]
    short = encode(tokenizer, two_attempts(1.0), "reward", e.spans[0][1])
    assert len(short.ids) == e.spans[0][1] and short.spans[1][1] <= short.spans[1][0]  # 2nd turn cut off


def test_encode_refuses_bad_trajectories(tokenizer) -> None:  # noqa: ANN001
    with pytest.raises(KeyError, match="no reward 'score'"):
        encode(tokenizer, two_attempts(1.0), "score", 256)
    with pytest.raises(ValueError, match="2 assistant turns but 3 rewards"):
        encode(tokenizer, two_attempts([1.0, 0.0, 1.0]), "r2", 256)
    with pytest.raises(ValueError, match="assistant turns"):
        encode(tokenizer, Trajectory(messages=[USER], rewards={"reward": 1.0}), "reward", 256)
    with pytest.raises(TypeError, match="trajectory records"):
        encode(tokenizer, Response(text="A."), "reward", 256)


def test_mean_baseline_per_turn_position() -> None:
    batch = [Encoded([], [], [0.0, 1.0], []), Encoded([], [], [0.0, 0.0], []), Encoded([], [], [1.0], [])]
    got = advantages(batch, "mean")
    assert [[round(a, 6) for a in row] for row in got] == [[-0.333333, 0.5], [-0.333333, -0.5], [0.666667]]
    assert advantages(batch, "none") == [[0.0, 1.0], [0.0, 0.0], [1.0]]


def test_trainer_modules_import_light() -> None:
    code = ("import sys, plugins.trainer_sft, plugins.trainer_dpo, plugins.trainer_reinforce\n"
            "heavy = ('torch', 'transformers', 'trl', 'peft', 'datasets', 'ray')\n"
            "print(sorted(m for m in heavy if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert trainer_reinforce.ReinforceTrainerStage.name == "reinforce"
