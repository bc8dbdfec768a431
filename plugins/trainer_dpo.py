"""The ``dpo`` trainer: direct preference optimisation of a LoRA adapter with TRL's ``DPOTrainer``.

What it is: ``preference_pair`` records -> chat rows (``prompt`` as the user turn, ``chosen`` and
``rejected`` as assistant turns) -> TRL's sigmoid DPO loss (``beta``) plus an SFT term on the chosen
answer weighted ``sft_weight`` (TRL's ``loss_type=["sigmoid", "sft"]``, the RPO/SPaR recipe) -> a
new ``ModelVersion``. Training continues ``base.adapter_path`` when set. The reference is the policy
training starts from (``reference="previous"``: TRL keeps a frozen copy of the starting adapter) or
the base model with adapters disabled (``reference="base"``); either way there is no second model.
What it is not: online DPO or a pair builder (loops build the pairs); it accepts no other kinds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field

from engine import hookimpl
from engine.records import PreferencePair, Record
from engine.training.lora import LoraTrainer, TrainOptions, assistant_turn, trainer_args, user_turn
from engine.training.protocol import Steps


class DPOOptions(TrainOptions):
    beta: float = Field(0.1, gt=0.0, description="DPO temperature: higher keeps closer to the reference")
    sft_weight: float = Field(0.1, ge=0.0, description="weight of the SFT (NLL) term on the chosen answer")
    reference: Literal["previous", "base"] = Field(
        "previous", description="previous: the policy this training starts from; base: adapters off")


def to_row(rec: Record) -> dict[str, list[dict[str, str]]]:
    if not isinstance(rec, PreferencePair):
        raise TypeError(f"dpo trains on preference_pair records, not {rec.kind!r}")
    return {"prompt": user_turn(rec.prompt), "chosen": assistant_turn(rec.chosen),
            "rejected": assistant_turn(rec.rejected)}


class DPOTrainerStage(LoraTrainer[DPOOptions]):
    """Preference optimisation (DPO + SFT term) through TRL's DPOTrainer."""

    name = "dpo"
    accepts = ("preference_pair",)

    def rows(self, examples: Sequence[Record]) -> list[Any]:
        return [to_row(r) for r in examples]

    def fit(self, model: Any, tokenizer: Any, rows: list[Any], tmpdir: str) -> Steps:
        from datasets import Dataset
        from trl import DPOConfig, DPOTrainer

        opts = self.options
        losses, weights = ["sigmoid"], None
        if opts.sft_weight:
            losses, weights = ["sigmoid", "sft"], [1.0, opts.sft_weight]
        args = DPOConfig(**trainer_args(opts, self.seed, tmpdir), beta=opts.beta, loss_type=losses,
                         loss_weights=weights)
        trainer = DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                             processing_class=tokenizer)
        peft = trainer.accelerator.unwrap_model(trainer.model)
        if opts.reference == "base" and "ref" in peft.peft_config:
            peft.delete_adapter("ref")  # TRL then scores the reference with adapters disabled
            peft.set_adapter("default")
        return self.run_trl(trainer)


@hookimpl
def register_trainers() -> list[type]:
    return [DPOTrainerStage]
