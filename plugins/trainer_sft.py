"""The ``sft`` trainer: supervised fine-tuning of a LoRA adapter with TRL's ``SFTTrainer``.

What it is: records -> chat prompt/completion rows (the model's chat template applied by TRL; by
default the loss is on the completion only) -> a few optimizer steps on the LoRA adapter of
``base`` (continuing ``base.adapter_path`` when set) -> a new ``ModelVersion`` whose adapter the
samplers load by path. It accepts ``training_example`` (chat ``messages`` ending in an assistant
turn, or ``prompt``/``completion``), ``response`` and ``refinement`` (``prompt`` -> ``text``) and
``preference_pair`` (``prompt`` -> ``chosen``, i.e. rejection-sampling fine-tuning).
What it is not: packing, multi-adapter training, or full fine-tuning; every assistant turn but the
last of a multi-turn example is context, not target.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import Field

from engine import hookimpl
from engine.records import PreferencePair, Record, Response, TrainingExample
from engine.training.lora import LoraTrainer, TrainOptions, assistant_turn, trainer_args, user_turn
from engine.training.protocol import Steps


class SFTOptions(TrainOptions):
    completion_only_loss: bool = Field(True, description="loss on the completion tokens only")


def to_row(rec: Record) -> dict[str, list[dict[str, str]]]:
    """One chat prompt/completion row for TRL (conversational prompt-completion format)."""
    if isinstance(rec, TrainingExample):
        if rec.messages:
            msgs = [{"role": m["role"], "content": m["content"]} for m in rec.messages]
            if msgs[-1]["role"] != "assistant":
                raise ValueError(f"training example {rec.id}: the last message must be the assistant's")
            return {"prompt": msgs[:-1], "completion": msgs[-1:]}
        if rec.prompt is not None and rec.completion is not None:
            return {"prompt": user_turn(rec.prompt), "completion": assistant_turn(rec.completion)}
        raise ValueError(f"training example {rec.id} has neither messages nor prompt and completion")
    if isinstance(rec, Response):  # responses and refinements
        return {"prompt": user_turn(rec.prompt), "completion": assistant_turn(rec.text)}
    if isinstance(rec, PreferencePair):
        return {"prompt": user_turn(rec.prompt), "completion": assistant_turn(rec.chosen)}
    raise TypeError(f"sft trains on training_example, response, refinement or preference_pair records, "
                    f"not {rec.kind!r}")


class SFTTrainerStage(LoraTrainer[SFTOptions]):
    """Supervised LoRA fine-tuning through TRL's SFTTrainer."""

    name = "sft"
    accepts = ("training_example", "response", "preference_pair")

    def rows(self, examples: Sequence[Record]) -> list[Any]:
        return [to_row(r) for r in examples]

    def fit(self, model: Any, tokenizer: Any, rows: list[Any], tmpdir: str) -> Steps:
        from datasets import Dataset
        from trl import SFTConfig, SFTTrainer

        opts = self.options
        args = SFTConfig(**trainer_args(opts, self.seed, tmpdir),
                         completion_only_loss=opts.completion_only_loss, packing=False)
        trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                             processing_class=tokenizer)
        if len(trainer.train_dataset) == 0:  # TRL drops examples left without completion tokens
            raise ValueError(f"none of the {len(rows)} examples has a completion token within "
                             f"max_length={opts.max_length} tokens; raise the trainer's max_length")
        return self.run_trl(trainer)


@hookimpl
def register_trainers() -> list[type]:
    return [SFTTrainerStage]
