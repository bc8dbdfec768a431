"""What each trainer accepts: record kinds -> TRL rows / token spans, options and registration."""

from __future__ import annotations

import copy
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


def sampled(tokenizer, text: str, eos: bool = True) -> list[int]:  # noqa: ANN001
    """``text`` tokenized one character at a time (not how the whole text tokenizes), then the eos."""
    return [t for ch in text for t in tokenizer(ch, add_special_tokens=False)["input_ids"]] + (
        [tokenizer.eos_token_id] if eos else [])


def chat_text(tokenizer, rec: Trajectory) -> str:  # noqa: ANN001
    return tokenizer.apply_chat_template(rec.messages, tokenize=False)


def test_encode_trains_the_sampled_token_ids(tokenizer) -> None:  # noqa: ANN001
    rec = two_attempts(1.0)
    ids = [sampled(tokenizer, "3"), sampled(tokenizer, "It is 2.")]
    assert ids[1][:-1] != tokenizer("It is 2.", add_special_tokens=False)["input_ids"]  # an unusual split
    rec.token_ids = ids
    e = encode(tokenizer, rec, "reward", 256)
    assert [e.ids[s:t] for s, t in e.spans] == ids  # each span: exactly that turn's sampled ids, eos too
    assert e.ids[e.spans[1][1]:] == tokenizer("\n", add_special_tokens=False)["input_ids"]  # untrained
    assert tokenizer.decode(e.ids) == chat_text(tokenizer, rec)  # the rest is the chat template's text
    old = encode(tokenizer, two_attempts(1.0), "reward", 256)
    assert e.ids[:e.spans[0][0]] == old.ids[:old.spans[0][0]] and e.ids != old.ids
    cut = encode(tokenizer, rec, "reward", e.spans[1][0] + 2)
    assert cut.ids == e.ids[:e.spans[1][0] + 2]
    assert cut.spans == [e.spans[0], (e.spans[1][0], e.spans[1][0] + 2)]


def test_sampled_ids_as_tokenized_give_the_template_ids(tokenizer) -> None:  # noqa: ANN001
    rec = two_attempts(1.0)
    plain = [tokenizer(c, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
             for c in ("3", "It is 2.")]
    rec.token_ids = plain
    e, old = encode(tokenizer, rec, "reward", 256), encode(tokenizer, two_attempts(1.0), "reward", 256)
    assert e.ids == old.ids == tokenizer(chat_text(tokenizer, rec), add_special_tokens=False)["input_ids"]
    assert [(s, t + 1) for s, t in e.spans] == old.spans  # old spans also train the closing newline
    assert [e.ids[s:t] for s, t in e.spans] == plain


def test_turn_cut_without_eos_gets_the_closing_outside_its_span(tokenizer) -> None:  # noqa: ANN001
    rec = two_attempts(1.0)
    rec.token_ids = [sampled(tokenizer, "3", eos=False), sampled(tokenizer, "It is 2.")]
    e = encode(tokenizer, rec, "reward", 256)
    assert [e.ids[s:t] for s, t in e.spans] == rec.token_ids
    assert tokenizer.decode(e.ids[e.spans[0][1]:e.spans[1][0]]).startswith("<|im_end|>\n<|im_start|>user")
    assert tokenizer.decode(e.ids) == chat_text(tokenizer, rec)


def test_encode_retokenizes_without_sampled_ids(tokenizer) -> None:  # noqa: ANN001
    text_ids = tokenizer(chat_text(tokenizer, two_attempts(1.0)), add_special_tokens=False)["input_ids"]
    weird = sampled(tokenizer, "It is 2.")
    for token_ids in (None, [weird], [[], weird]):  # none, not one per turn, a turn without ids
        rec = two_attempts(1.0)
        rec.token_ids = token_ids
        e = encode(tokenizer, rec, "reward", 256)
        assert e.ids == text_ids
    rec = two_attempts(1.0)
    rec.token_ids = [sampled(tokenizer, "3"), weird]
    odd = copy.deepcopy(tokenizer)  # a template whose text before turn 2 does not extend that before turn 1
    odd.chat_template = "{{ messages | length }}" + tokenizer.chat_template
    e = encode(odd, rec, "reward", 256)
    assert e.ids == odd(chat_text(odd, rec), add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(e.ids[e.spans[1][0]:e.spans[1][1]]).strip() == "It is 2.<|im_end|>"


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
