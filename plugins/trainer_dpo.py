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

import tempfile
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field

from engine import hookimpl
from engine.records import PreferencePair, Record
from engine.training.protocol import ModelVersion
from plugins._lora import (
    LoraTrainer,
    TrainOptions,
    assistant_turn,
    load_policy,
    quiet,
    run_quietly,
    save_version,
    seed_everything,
    trainer_args,
    user_turn,
)


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


class DPOTrainerStage(LoraTrainer):
    """Preference optimisation (DPO + SFT term) through TRL's DPOTrainer."""

    name = "dpo"
    Options = DPOOptions

    def __init__(self, options: Any = None, context: Any = None, pm: Any = None) -> None:
        super().__init__(options, context)
        self.pm = pm

    def train(self, examples: Sequence[Record], base: ModelVersion, out_dir: str) -> ModelVersion:
        rows = [to_row(r) for r in examples]
        if not rows:
            raise ValueError("dpo got no preference pairs")
        from datasets import Dataset
        from trl import DPOConfig, DPOTrainer

        opts: DPOOptions = self.opts
        losses, weights = ["sigmoid"], None
        if opts.sft_weight:
            losses, weights = ["sigmoid", "sft"], [1.0, opts.sft_weight]
        with quiet(opts.verbose), tempfile.TemporaryDirectory(prefix="dpo-") as tmp:
            seed_everything(self.seed)
            model, tokenizer = load_policy(base, opts, self.pm)
            args = DPOConfig(**trainer_args(opts, self.seed, tmp), beta=opts.beta, loss_type=losses,
                             loss_weights=weights)
            trainer = DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                                 processing_class=tokenizer)
            peft = trainer.accelerator.unwrap_model(trainer.model)
            if opts.reference == "base" and "ref" in peft.peft_config:
                peft.delete_adapter("ref")  # TRL then scores the reference with adapters disabled
                peft.set_adapter("default")
            self.last_metrics = run_quietly(trainer, opts.verbose)
            return save_version(peft, base, out_dir)


@hookimpl
def register_trainers() -> list[type]:
    return [DPOTrainerStage]
