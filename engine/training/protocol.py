"""The trainer contract: examples in, a new model version out.

What it is: ``ModelVersion`` (base model, LoRA adapter path, checkpoint hash, parent version) and
the ``Trainer`` protocol with its one verb ``train``. Supervised trainers (SFT, DPO) take
training examples or preference pairs; an on-policy RL trainer takes trajectories (records whose
payload holds the turns and rewards) and a reference version for its KL term through the same
verb. What it is not: a trainer; ``sft`` and ``dpo`` are built-in plugins.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel

from engine.records import Record, content_hash


class ModelVersion(BaseModel):
    """A model the run can sample from: a base model plus an optional LoRA adapter."""

    id: str = ""
    base_model: str
    adapter_path: str | None = None
    checkpoint_hash: str | None = None
    parent: str | None = None

    def model_post_init(self, __context: object) -> None:
        if not self.id:
            self.id = version_id(self.base_model, self.checkpoint_hash)


def version_id(base_model: str, checkpoint_hash: str | None) -> str:
    """``base`` for a base model, ``base+lora-<hash12>`` for an adapter on it: the same id the
    samplers stamp on what they sample from that adapter (engine.sampling.resolver.model_version)."""
    return base_model if not checkpoint_hash else f"{base_model}+lora-{checkpoint_hash[:12]}"


def base_version(base_model: str) -> ModelVersion:
    return ModelVersion(base_model=base_model)


@runtime_checkable
class Trainer(Protocol):
    """Trains on a batch of records starting from ``base``; returns the new version."""

    name: ClassVar[str]

    def train(self, examples: Sequence[Record], base: ModelVersion, out_dir: str) -> ModelVersion: ...


__all__ = ["ModelVersion", "Trainer", "base_version", "content_hash", "version_id"]
