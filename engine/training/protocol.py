"""The trainer contract and model-version identity: examples in, a new model version out.

What it is: ``ModelVersion`` (base model, LoRA adapter path, checkpoint hash, parent version, and
the per-step metrics of the training that made it), the ``Trainer`` protocol with its one verb
``train``, and the one home of model-version identity: ``adapter_files_hash`` (sha256 over an
adapter directory's ``adapter_*`` files) and ``version_id`` (``base`` or ``base+lora-<hash12>``),
which the trainers stamp on what they save and the samplers on what they sample
(engine.sampling.resolver calls both). Supervised trainers (SFT, DPO) take training examples or
preference pairs; an on-policy RL trainer takes trajectories through the same verb. What it is
not: a trainer; the LoRA trainer base is engine.training.lora, the built-in trainers are plugins.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from engine.records import Record, content_hash

Steps = list[dict[str, float]]
"""Per-optimizer-step training metrics, in step order: ``loss`` plus what the trainer has
(``reward``, ``kl``, ``rewards/chosen``...) and ``step`` (1-based)."""


class ModelVersion(BaseModel):
    """A model the run can sample from: a base model plus an optional LoRA adapter.

    ``steps`` carries the per-step metrics of the training that made it (lineage stores them);
    they are no part of the id, which depends on the base model and the adapter bytes only."""

    id: str = ""
    base_model: str
    adapter_path: str | None = None
    checkpoint_hash: str | None = None
    parent: str | None = None
    steps: Steps = Field(default_factory=list)

    def model_post_init(self, __context: object) -> None:
        if not self.id:
            self.id = version_id(self.base_model, self.checkpoint_hash)


def version_id(base_model: str, checkpoint_hash: str | None) -> str:
    """``base`` for a base model, ``base+lora-<hash12>`` for an adapter on it: the same id the
    samplers stamp on what they sample from that adapter (engine.sampling.resolver.model_version)."""
    return base_model if not checkpoint_hash else f"{base_model}+lora-{checkpoint_hash[:12]}"


def adapter_files(path: str | Path) -> list[Path]:
    """The files of an adapter directory that make its identity (``adapter_*``), sorted by name."""
    return sorted(p for p in Path(path).iterdir() if p.is_file() and p.name.startswith("adapter_"))


def adapter_files_hash(path: str | Path) -> str:
    """sha256 (hex) over the ``adapter_*`` files of an adapter directory: name, then bytes, in name
    order. Trainers normalise ``adapter_config.json`` when they save (engine.training.lora), so
    byte-identical weights get the same hash run after run."""
    h = hashlib.sha256()
    for f in adapter_files(path):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def base_version(base_model: str) -> ModelVersion:
    return ModelVersion(base_model=base_model)


@runtime_checkable
class Trainer(Protocol):
    """Trains on a batch of records starting from ``base``; returns the new version."""

    name: ClassVar[str]

    def train(self, examples: Sequence[Record], base: ModelVersion, out_dir: str) -> ModelVersion: ...


__all__ = ["ModelVersion", "Steps", "Trainer", "adapter_files", "adapter_files_hash", "base_version",
           "content_hash", "version_id"]
