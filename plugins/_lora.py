"""LoRA plumbing shared by the built-in trainers (not a plugin: the name starts with ``_``).

What it is: the options every trainer shares (``LoraOptions``, ``TrainOptions``), loading the
policy (the resolved base model plus, when ``base.adapter_path`` is set, the previous adapter made
trainable again, so each iteration continues from the last one; else a fresh LoRA adapter),
seeding, quieting library logs and progress bars, the common ``transformers`` training arguments
(no reporting, no checkpoints, no hub), and saving the adapter atomically with its checkpoint hash
(sha256 over the ``adapter_*`` files, the same scheme the samplers' ``adapter_hash`` uses, so
``checkpoint_hash[:12]`` is the hash in the sampler's ``base+lora-<hash>`` version ids).
What it is not: a trainer. torch, transformers and peft are imported inside the functions.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from engine.contracts import Resources, Stage
from engine.training.protocol import ModelVersion, version_id


class LoraOptions(BaseModel):
    """The LoRA adapter made for a first iteration (a continued adapter keeps its own shape)."""

    model_config = ConfigDict(extra="forbid")
    r: int = Field(8, ge=1)
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    layers: list[int] | None = Field(
        None, description="decoder layers to adapt (default: all); adapting only the last few makes "
                          "backward passes short")


class TrainOptions(BaseModel):
    """Settings every built-in trainer shares."""

    model_config = ConfigDict(extra="forbid")
    lora: LoraOptions = Field(default_factory=LoraOptions)
    learning_rate: float = Field(1e-4, gt=0.0)
    epochs: float = Field(1.0, gt=0.0, description="passes over the examples (ignored when max_steps is set)")
    max_steps: int | None = Field(None, ge=1, description="optimizer steps; overrides epochs")
    batch_size: int = Field(4, ge=1)
    grad_accum: int = Field(1, ge=1, description="gradient accumulation steps")
    max_length: int = Field(512, ge=8, description="tokens per sequence (prompt + completion)")
    seed: int | None = Field(None, description="default: the seed the runtime gives the stage")
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="base weights; auto: bfloat16 on GPUs and CPUs with native bf16, else float32 "
                            "(LoRA weights stay float32 either way)")
    gradient_checkpointing: bool = Field(
        False, description="trade compute for memory (TRL's default is on; off is faster for small models)")
    num_threads: int | None = Field(None, description="torch CPU threads; default: torch's")
    cache_dir: str | None = Field(None, description="where converted base models live")
    verbose: bool = Field(False, description="show library logs and progress bars")


class LoraTrainer(Stage):
    """Base of the built-in trainers: options, seed, resources. Subclasses implement ``train``."""

    kind = "trainer"
    Options: ClassVar[type[BaseModel]] = TrainOptions
    resources: ClassVar[Resources] = Resources(num_cpus=2.0)

    @property
    def opts(self) -> Any:
        return self.options

    @property
    def seed(self) -> int:
        return int(self.opts.seed if self.opts.seed is not None else self.context.seed)


# -- loading -------------------------------------------------------------------------------------


def adapter_files_hash(path: str | Path) -> str:
    """sha256 over the ``adapter_*`` files of an adapter directory (name, then bytes, sorted)."""
    h = hashlib.sha256()
    for f in sorted(p for p in Path(path).iterdir() if p.is_file() and p.name.startswith("adapter_")):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def device_and_dtype(opts: TrainOptions) -> tuple[str, Any]:
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if opts.dtype != "auto":
        return device, getattr(torch, opts.dtype)
    cpu = torch.cpu
    native_bf16 = device == "cuda" or cpu._is_avx512_bf16_supported() or cpu._is_amx_tile_supported()
    return device, torch.bfloat16 if native_bf16 else torch.float32


def load_policy(base: ModelVersion, opts: TrainOptions, pm: Any = None) -> tuple[Any, Any]:
    """(peft model with a trainable ``default`` adapter, tokenizer) for ``base``."""
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engine.sampling.resolver import resolve_model_path

    if opts.num_threads:
        torch.set_num_threads(opts.num_threads)
    path = resolve_model_path(base.base_model, Path(opts.cache_dir) if opts.cache_dir else None, pm)
    device, dtype = device_and_dtype(opts)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device)
    if base.adapter_path:
        peft = PeftModel.from_pretrained(model, base.adapter_path, is_trainable=True)
    else:
        cfg = LoraConfig(r=opts.lora.r, lora_alpha=opts.lora.alpha, lora_dropout=opts.lora.dropout,
                         target_modules=list(opts.lora.target_modules), task_type="CAUSAL_LM",
                         layers_to_transform=opts.lora.layers)
        peft = get_peft_model(model, cfg)
    peft.peft_config["default"].base_model_name_or_path = base.base_model  # portable, hash-stable
    return peft, tokenizer


def seed_everything(seed: int) -> None:
    from transformers import set_seed

    set_seed(seed)


@contextmanager
def quiet(verbose: bool) -> Iterator[None]:
    """Silence transformers/datasets logs and progress bars for the block (unless ``verbose``)."""
    if verbose:
        yield
        return
    import datasets
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = datasets.is_progress_bar_enabled()
    hf_bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if hf_bars:
            hf_logging.enable_progress_bar()
        if bars:
            datasets.enable_progress_bars()


def trainer_args(opts: TrainOptions, seed: int, output_dir: str) -> dict[str, Any]:
    """Keyword arguments for a TRL config (a ``transformers.TrainingArguments`` subclass)."""
    device, dtype = device_and_dtype(opts)
    import torch

    return dict(
        output_dir=output_dir, per_device_train_batch_size=opts.batch_size,
        gradient_accumulation_steps=opts.grad_accum, learning_rate=opts.learning_rate,
        num_train_epochs=opts.epochs, max_steps=opts.max_steps or -1, seed=seed, data_seed=seed,
        max_length=opts.max_length, report_to=[], logging_strategy="no", save_strategy="no",
        disable_tqdm=not opts.verbose, dataloader_num_workers=0, use_cpu=device == "cpu",
        bf16=dtype == torch.bfloat16 and device == "cuda", warmup_steps=0,
        gradient_checkpointing=opts.gradient_checkpointing,
    )


def run_quietly(trainer: Any, verbose: bool) -> dict[str, Any]:
    """``trainer.train()`` without the printed log lines; returns the last logged metrics."""
    from transformers.trainer_callback import PrinterCallback

    if not verbose:
        trainer.remove_callback(PrinterCallback)
    trainer.train()
    history = trainer.state.log_history
    return dict(history[-1]) if history else {}


# -- saving ----------------------------------------------------------------------------------------


def save_version(model: Any, base: ModelVersion, out_dir: str) -> ModelVersion:
    """Save the ``default`` adapter to ``out_dir`` (atomically) and return the new model version."""
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp), selected_adapters=["default"], save_embedding_layers=False)
    (tmp / "README.md").unlink(missing_ok=True)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return ModelVersion(base_model=base.base_model, adapter_path=str(out),
                        checkpoint_hash=adapter_files_hash(out), parent=parent_id(base))


def parent_id(base: ModelVersion) -> str:
    """The id of the version training started from, hashing its adapter when the id lacks it."""
    if base.checkpoint_hash or not base.adapter_path:
        return base.id
    return version_id(base.base_model, adapter_files_hash(base.adapter_path))


def user_turn(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def assistant_turn(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]
