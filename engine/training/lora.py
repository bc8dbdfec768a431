"""The public LoRA trainer base: one template ``train()``, subclasses fill in ``rows`` and ``fit``.

What it is: the options every LoRA trainer shares (``LoraOptions``, ``TrainOptions``) and
``LoraTrainer``, whose ``train(examples, base, out_dir)`` is the same for every trainer: records ->
``rows()`` (refused when empty) -> library logs and progress bars quieted -> seeded -> the policy
loaded (the base model, resolved through ``StageContext.resolve_model`` and so the plugins'
``resolve_model`` hook, plus, when ``base.adapter_path`` is set, the previous adapter made
trainable again, so each iteration continues from the last one; else a fresh LoRA adapter) ->
``fit()`` (the optimizer steps; returns one dict of metrics per step) -> the ``default`` adapter
saved atomically, its ``adapter_config.json`` normalised (sorted keys and lists, so identical
weights hash the same run after run) and hashed (``adapter_files_hash``) into a new
``ModelVersion`` that carries the per-step metrics. Helpers for TRL-based ``fit``s:
``trainer_args`` (no reporting, checkpoints or hub; a log entry per optimizer step) and
``LoraTrainer.run_trl`` (trains without console output, returns the per-step metrics).
``num_workers`` > 1 asks the runtime for data-parallel training (Ray Train): ``batch_size`` stays the
global batch, split evenly over the workers (engine.training.parallel), so the loss curve does not
depend on the number of workers. TRL's trainers pick up torch.distributed themselves. ``num_cpus``
and ``num_gpus`` are what each worker holds (``resources_for``); a worker with a GPU trains on it.
What it is not: a trainer (sft, dpo and reinforce are plugins) or a launcher (engine/runtime/training.py
starts the workers; nothing here imports ray). torch, transformers, peft, trl and datasets are
imported inside the functions that need them.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from engine.contracts import Resources, Stage, StageKind
from engine.records import Record
from engine.training.parallel import per_worker_batch, world
from engine.training.protocol import ModelVersion, Steps, adapter_files_hash, version_id


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
    """Settings every LoRA trainer shares."""

    model_config = ConfigDict(extra="forbid")
    lora: LoraOptions = Field(default_factory=LoraOptions)
    learning_rate: float = Field(1e-4, gt=0.0)
    epochs: float = Field(1.0, gt=0.0, description="passes over the examples (ignored when max_steps is set)")
    max_steps: int | None = Field(None, ge=1, description="optimizer steps; overrides epochs")
    batch_size: int = Field(4, ge=1)
    grad_accum: int = Field(1, ge=1, description="gradient accumulation steps")
    num_workers: int = Field(1, ge=1, description="data-parallel workers (Ray Train, each with num_cpus and "
                                                  "num_gpus); batch_size is the global batch")
    num_gpus: float = Field(0.0, ge=0.0, description="GPUs per training worker (the run's sampler replicas "
                                                     "lend theirs while it trains when none are free)")
    num_cpus: float = Field(2.0, gt=0.0, description="CPUs per training worker")
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

    @field_validator("num_workers")
    @classmethod
    def _divides_batch(cls, n: int, info: ValidationInfo) -> int:
        batch = info.data.get("batch_size")
        if batch is not None and batch % n:
            raise ValueError(f"num_workers {n} must divide batch_size {batch} (the global batch, split "
                             f"evenly over the workers)")
        return n


TrainOptionsT = TypeVar("TrainOptionsT", bound=TrainOptions)
CUMULATIVE = ("step", "epoch", "learning_rate", "num_tokens")
"""Step metrics that are a position or a running total, not a per-step value to average."""


class LoraTrainer(Stage[TrainOptionsT]):
    """Base of LoRA trainers. Subclass ``LoraTrainer[MyOptions]`` (``MyOptions`` extends
    ``TrainOptions``), set ``name`` and ``accepts``, and implement ``rows`` and ``fit``; ``train``
    is the template every trainer shares. ``last_metrics``: a summary of the last ``train``."""

    kind: ClassVar[StageKind] = "trainer"
    Options: ClassVar[type[BaseModel]] = TrainOptions
    resources: ClassVar[Resources] = Resources(num_cpus=2.0)  # the defaults of num_cpus and num_gpus
    last_metrics: dict[str, float]

    @classmethod
    def resources_for(cls, options: BaseModel | None) -> Resources:
        """One training worker's resources: the options' ``num_cpus`` and ``num_gpus``."""
        res = cls.resources
        return Resources(num_cpus=getattr(options, "num_cpus", res.num_cpus),
                         num_gpus=getattr(options, "num_gpus", res.num_gpus))

    @property
    def seed(self) -> int:
        return int(self.options.seed if self.options.seed is not None else self.context.seed)

    def rows(self, examples: Sequence[Record]) -> list[Any]:
        """The training rows of ``examples`` (raise TypeError for a record kind it cannot train on)."""
        raise NotImplementedError

    def fit(self, model: Any, tokenizer: Any, rows: list[Any], tmpdir: str) -> Steps:
        """Optimizer steps on ``model``'s trainable ``default`` adapter; one metrics dict per step."""
        raise NotImplementedError

    def train(self, examples: Sequence[Record], base: ModelVersion, out_dir: str) -> ModelVersion:
        """rows -> quiet -> seed -> load the policy -> fit -> save the new version."""
        rows = self.rows(examples)
        if not rows:
            raise ValueError(f"{self.name} got no examples (it trains on {', '.join(self.accepts)})")
        self.last_metrics = {}
        opts = self.options
        with quiet(opts.verbose), tempfile.TemporaryDirectory(prefix=f"{self.name}-") as tmp:
            seed_everything(self.seed)
            model, tokenizer = self.load_policy(base)
            steps = self.fit(model, tokenizer, rows, tmp)
            if not self.last_metrics:
                self.last_metrics = dict(steps[-1]) if steps else {}
            return save_version(model, base, out_dir, steps)

    def load_policy(self, base: ModelVersion) -> tuple[Any, Any]:
        """(peft model with a trainable ``default`` adapter, tokenizer) for ``base``."""
        import torch
        from peft import LoraConfig, PeftModel, get_peft_model
        from transformers import AutoModelForCausalLM, AutoTokenizer

        opts = self.options
        if opts.num_threads:
            torch.set_num_threads(opts.num_threads)
        path = self.context.resolve_model(base.base_model, Path(opts.cache_dir) if opts.cache_dir else None)
        device, dtype = device_and_dtype(opts)
        tokenizer = AutoTokenizer.from_pretrained(path)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model: Any = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        model = model.to(device)
        if base.adapter_path:
            peft = PeftModel.from_pretrained(model, base.adapter_path, is_trainable=True)
        else:
            cfg = LoraConfig(r=opts.lora.r, lora_alpha=opts.lora.alpha, lora_dropout=opts.lora.dropout,
                             target_modules=list(opts.lora.target_modules), task_type="CAUSAL_LM",
                             layers_to_transform=opts.lora.layers)
            peft = get_peft_model(model, cfg)
        peft.peft_config["default"].base_model_name_or_path = base.base_model  # portable, hash-stable
        return peft, tokenizer

    def run_trl(self, trainer: Any) -> Steps:
        """``trainer.train()`` (a TRL/transformers trainer built with :func:`trainer_args`) without
        printed log lines; returns one metrics dict per optimizer step. ``last_metrics`` becomes
        the last step's metrics, each per-step value averaged over the steps, then the final
        summary (``train_loss``, ``train_runtime``...)."""
        from transformers.trainer_callback import PrinterCallback

        if not self.options.verbose:
            trainer.remove_callback(PrinterCallback)
        trainer.train()
        history = list(trainer.state.log_history)
        steps = [numbers(e) for e in history if "loss" in e]
        summary = numbers(history[-1]) if history and "loss" not in history[-1] else {}
        names = dict.fromkeys(k for s in steps for k in s if k not in CUMULATIVE)
        means = {k: sum(vals) / len(vals) for k in names if (vals := [s[k] for s in steps if k in s])}
        self.last_metrics = {**(steps[-1] if steps else {}), **means, **summary}
        return steps


def numbers(entry: dict[str, Any]) -> dict[str, float]:
    """The finite numeric entries of a log entry, as floats."""
    return {k: float(v) for k, v in entry.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)}


def device_and_dtype(opts: TrainOptions) -> tuple[str, Any]:
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if opts.dtype != "auto":
        return device, getattr(torch, opts.dtype)
    cpu = torch.cpu
    native_bf16 = device == "cuda" or cpu._is_avx512_bf16_supported() or cpu._is_amx_tile_supported()
    return device, torch.bfloat16 if native_bf16 else torch.float32


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
    from transformers.utils import logging

    hf_logging: Any = logging  # partly untyped
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
    """Keyword arguments for a TRL config (a ``transformers.TrainingArguments`` subclass): no
    reporting, checkpoints or hub; one log entry per optimizer step (kept off the console by
    :meth:`LoraTrainer.run_trl`); under torch.distributed, each worker's share of the global batch."""
    device, dtype = device_and_dtype(opts)
    import torch

    return dict(
        output_dir=output_dir, per_device_train_batch_size=per_worker_batch(opts.batch_size, world().size),
        gradient_accumulation_steps=opts.grad_accum, learning_rate=opts.learning_rate,
        num_train_epochs=opts.epochs, max_steps=opts.max_steps or -1, seed=seed, data_seed=seed,
        max_length=opts.max_length, report_to=[], logging_strategy="steps", logging_steps=1,
        logging_first_step=False, save_strategy="no", disable_tqdm=not opts.verbose,
        dataloader_num_workers=0, use_cpu=device == "cpu", bf16=dtype == torch.bfloat16 and device == "cuda",
        warmup_steps=0, gradient_checkpointing=opts.gradient_checkpointing,
        ddp_find_unused_parameters=False,  # every trainable LoRA weight takes part in the forward pass
    )


# -- saving ----------------------------------------------------------------------------------------


def normalise_adapter_config(adapter_dir: str | Path) -> None:
    """Rewrite ``adapter_config.json`` canonically: keys sorted, lists of names or numbers sorted
    (peft keeps ``target_modules`` as a set, saved in a different order run after run)."""
    path = Path(adapter_dir) / "adapter_config.json"
    if path.is_file():
        cfg = json.loads(path.read_text())
        path.write_text(json.dumps(_canonical(cfg), sort_keys=True, indent=2) + "\n")


def _canonical(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        items = [_canonical(v) for v in value]
        if items and (all(isinstance(v, str) for v in items) or all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in items)):
            return sorted(items)
        return items
    return value


def save_version(model: Any, base: ModelVersion, out_dir: str, steps: Steps | None = None) -> ModelVersion:
    """Save the ``default`` adapter to ``out_dir`` (atomically, config normalised) and return the
    new model version, carrying ``steps``."""
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp), selected_adapters=["default"], save_embedding_layers=False)
    (tmp / "README.md").unlink(missing_ok=True)
    normalise_adapter_config(tmp)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return ModelVersion(base_model=base.base_model, adapter_path=str(out),
                        checkpoint_hash=adapter_files_hash(out), parent=parent_id(base),
                        steps=list(steps or []))


def parent_id(base: ModelVersion) -> str:
    """The id of the version training started from, hashing its adapter when the id lacks it."""
    if base.checkpoint_hash or not base.adapter_path:
        return base.id
    return version_id(base.base_model, adapter_files_hash(base.adapter_path))


def user_turn(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def assistant_turn(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]
