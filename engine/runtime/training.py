"""Where a trainer runs: on Ray, with the resources its options ask for, never in the driver.

What it is: ``run_training(bound, context, examples, base, out_dir, ray_enabled, make_room)``,
what ``Runner.train`` calls. With Ray on (``runtime.ray``, the default) the trainer runs in a Ray
task holding its resources (engine.contracts ``resources_of``: num_cpus, num_gpus, from the
trainer's options where it says so), reserved first through a placement group so that a cluster
that cannot hold it fails with a message instead of waiting forever. When those bundles do not fit
in what Ray has free, ``make_room`` (the run's ``Services.lend``) stops as many sampler or
sandbox replicas as needed until the training is over (engine.runtime.lending). With
``trainer.options.num_workers`` > 1 it runs under Ray Train (``TorchTrainer``): that many
workers, each with those resources, torch.distributed initialised (gloo on CPUs, nccl on
GPUs, ``use_gpu``), each training on its shard of every global batch with gradients combined over the workers
(engine.training.parallel; TRL's trainers do it through DDP). Rank 0's result comes back as Ray
Train's return value, so no checkpoint storage is needed. No filesystem is shared with the
driver: the job (trainer class, options, context, examples, the starting adapter's files) goes
through the object store, the worker trains in its own temp dir and sends back the new adapter's
files with the ``ModelVersion``, and the driver writes them to ``out_dir`` atomically, checking
their hash. With Ray off the trainer runs in this process, as before. ``training_cpus`` is what a
local Ray must offer on top of the run's services. What it is not: the trainers (engine.training,
plugins/trainer_*), or lineage bookkeeping (the runner records the version).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from engine.contracts import StageContext, build_stage, resources_of
from engine.errors import UserError
from engine.training.protocol import ModelVersion, adapter_files_hash

if TYPE_CHECKING:
    from engine.config import ResolvedConfig, ResolvedStage
    from engine.records import Record

PLACEMENT_TIMEOUT_S = 120.0
"""How long a trainer waits for the cluster to free or add its resources before the run fails."""
RECHECK_S = 2.0
"""While waiting, how often a training whose bundles do not fit asks the run's replicas to lend again."""

MakeRoom = Callable[[list[dict[str, float]]], AbstractContextManager[bool]]
"""``make_room(bundles)``: lends the run's service replicas' resources for the block (True when
it lent any); engine.runtime.services ``Services.lend``."""

AdapterFiles = dict[str, bytes]
"""An adapter directory's files by relative path."""


@dataclass
class Job:
    """Everything a training worker needs; one object in the object store."""

    cls: type[Any]
    options: BaseModel
    context: StageContext
    examples: list[Record]
    base: ModelVersion
    base_files: AdapterFiles


@dataclass
class Trained:
    """What a training worker sends back: the new version, its adapter's files, where it ran."""

    version: ModelVersion
    files: AdapterFiles
    pid: int
    node: str


def run_training(bound: ResolvedStage, context: StageContext, examples: list[Record], base: ModelVersion,
                 out_dir: str, ray_enabled: bool, make_room: MakeRoom | None = None) -> ModelVersion:
    """Train ``bound``'s trainer on ``examples`` from ``base``; the new adapter ends up in ``out_dir``.
    ``make_room``: lends the run's replicas' resources while the training's bundles do not fit."""
    workers = int(getattr(bound.options, "num_workers", 1))
    if not ray_enabled:
        if workers > 1:
            raise UserError(f"{bound.path}.options.num_workers is {workers}: data-parallel training runs "
                            f"on Ray Train; set runtime.ray true or num_workers 1")
        trainer: Any = build_stage(bound.info.cls, bound.options, context)
        new: ModelVersion = trainer.train(examples, base, out_dir)
        return new
    return land(train_on_ray(bound, context, examples, base, workers, make_room), out_dir)


def training_cpus(resolved: ResolvedConfig) -> float:
    """CPUs the run's trainers ask for at once (the largest of them: trainings run one at a time)."""
    bound = [b for b in (resolved.trainer, *resolved.trainers.values()) if b is not None]
    return max((resources_of(b.info.cls, b.options).num_cpus * int(getattr(b.options, "num_workers", 1))
                for b in bound), default=0.0)


def train_on_ray(bound: ResolvedStage, context: StageContext, examples: list[Record], base: ModelVersion,
                 workers: int, make_room: MakeRoom | None = None) -> Trained:
    """Run the training on Ray (a task, or Ray Train for several workers); rank 0's result."""
    import ray

    res = resources_of(bound.info.cls, bound.options)
    shipped = replace(context, sampler=None, samplers={}, sandbox=None, emitted=[])  # the manager stays too
    job = ray.put(Job(bound.info.cls, bound.options, shipped, list(examples),
                      base.model_copy(update={"adapter_path": None}), pack(base.adapter_path)))
    bundle = {k: float(v) for k, v in (("CPU", res.num_cpus), ("GPU", res.num_gpus)) if v > 0}
    what = f"{bound.path} {bound.info.name!r}"
    with ExitStack() as lent:  # replicas lent to this training come back when it is over
        if workers > 1:
            _reserve([bundle] * workers, what, make_room, lent).release()  # Ray Train places its own
            return _train_parallel(job, workers, bundle)
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        reservation = _reserve([bundle], what, make_room, lent)
        try:
            task = ray.remote(_train_task).options(
                num_cpus=res.num_cpus, num_gpus=res.num_gpus, scheduling_strategy=(
                    PlacementGroupSchedulingStrategy(reservation.group) if reservation.group else None))
            trained: Trained = ray.get(task.remote(job))
            return trained
        finally:
            reservation.release()


@dataclass
class _Reservation:
    group: Any  # None for a trainer that declares no resources

    def release(self) -> None:
        from ray.util.placement_group import remove_placement_group

        if self.group is not None:
            remove_placement_group(self.group)
            self.group = None


def _reserve(bundles: list[dict[str, float]], what: str, make_room: MakeRoom | None = None,
             lent: ExitStack | None = None) -> _Reservation:
    """Hold ``bundles`` (one per worker) or fail, naming what the trainer needs and what is free.
    While they do not fit in what Ray has free (checked before waiting, and again every
    ``RECHECK_S`` while waiting), ``make_room(bundles)`` is entered on ``lent`` (until it lends)."""
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    if not bundles[0]:
        return _Reservation(None)
    from engine.runtime.lending import placeable_now

    def lend_if_short() -> bool:
        """True once nothing more can be tried: no one to lend, or replicas lent."""
        if make_room is None or lent is None:
            return True
        return not placeable_now(bundles) and lent.enter_context(make_room(bundles))

    done = lend_if_short()
    group = placement_group(bundles, strategy="PACK")
    deadline = time.monotonic() + PLACEMENT_TIMEOUT_S
    while not group.wait(timeout_seconds=max(0.0, min(RECHECK_S, deadline - time.monotonic()))):
        if time.monotonic() >= deadline:
            break
        done = done or lend_if_short()
    else:
        return _Reservation(group)
    remove_placement_group(group)
    available: dict[str, float] = ray.available_resources()  # type: ignore[no-untyped-call]
    free = {k: v for k, v in available.items() if k in ("CPU", "GPU")}
    fewer = f" or lower {what.split()[0]}.options.num_workers" if len(bundles) > 1 else ""
    lending = done and make_room is not None and lent is not None
    kept = ", the run's replicas lending theirs" if lending else "; the run's replicas keep theirs"
    raise UserError(f"{what} needs {bundles[0]} x {len(bundles)} worker(s), which the Ray cluster could not "
                    f"place within {PLACEMENT_TIMEOUT_S:.0f} s (free now: {free}{kept}). Give Ray more "
                    f"resources (runtime.num_cpus for a local Ray){fewer}")


def _train_task(job: Job) -> Trained:
    return train_here(job)


def _train_parallel(job: Any, workers: int, bundle: dict[str, float]) -> Trained:
    from ray.train import RunConfig, ScalingConfig

    scaling = ScalingConfig(num_workers=workers, use_gpu=bundle.get("GPU", 0.0) > 0,
                            resources_per_worker=bundle or None)
    loop: Any = _train_loop  # Ray Train (v2) hands back rank 0's return value; its stubs say None
    with tempfile.TemporaryDirectory(prefix="autodidact-ray-train-") as storage:
        run = RunConfig(name=f"train-{uuid.uuid4().hex[:8]}", storage_path=storage)
        trainer = _torch_trainer()(loop, train_loop_config={"job": job}, scaling_config=scaling,
                                   run_config=run)
        result: Any = trainer.fit()
    trained = result.return_value
    if not isinstance(trained, Trained):
        raise RuntimeError(f"Ray Train returned {type(trained).__name__}, not the rank 0 training result")
    return trained


def _torch_trainer() -> Any:
    """Ray Train's ``TorchTrainer`` less its PlacementGroupCleaner. That detached actor asks the state
    API whether the controller lives; with no dashboard (the runtime starts Ray without one) it may
    reach another Ray instance on the machine, find no such controller and remove a live run's
    placement group, killing its workers (seen here with two local Rays). Without it nothing leaks:
    a controller that dies fails ``fit``, and placement groups go with the driver's job."""
    from ray.train.torch import TorchTrainer

    base: Any = TorchTrainer  # Ray Train v2's; ray's stubs describe v1

    class Trainer(base):  # type: ignore[misc]
        def _create_default_callbacks(self) -> list[Any]:
            return [cb for cb in super()._create_default_callbacks()
                    if type(cb).__name__ != "PlacementGroupCleanerCallback"]

    return Trainer


def _train_loop(config: dict[str, Any]) -> Trained | None:
    """One Ray Train worker, torch.distributed initialised (the trainers read it there)."""
    import ray
    import ray.train

    trained = train_here(ray.get(config["job"]))
    return trained if ray.train.get_context().get_world_rank() == 0 else None


def train_here(job: Job) -> Trained:
    """Train in this process, in a temp dir of its own: the starting adapter written from its files,
    the new one read back into files."""
    with tempfile.TemporaryDirectory(prefix="autodidact-train-") as tmp:
        base = job.base
        if job.base_files:
            base = base.model_copy(update={"adapter_path": unpack(job.base_files, Path(tmp, "base"))})
        trainer: Any = build_stage(job.cls, job.options, job.context)
        version: ModelVersion = trainer.train(job.examples, base, str(Path(tmp, "adapter")))
        return Trained(version, pack(version.adapter_path), os.getpid(), _node())


def _node() -> str:
    import ray

    return str(ray.get_runtime_context().get_node_id()) if ray.is_initialized() else ""


def pack(path: str | None) -> AdapterFiles:
    """The files under an adapter directory (none for no adapter)."""
    if not path:
        return {}
    root = Path(path)
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def unpack(files: AdapterFiles, path: Path) -> str:
    path.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return str(path)


def land(trained: Trained, out_dir: str) -> ModelVersion:
    """Write a worker's adapter files to ``out_dir`` (atomically; their hash checked against the
    version's) and return the version pointing there."""
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    unpack(trained.files, tmp)
    if adapter_files_hash(tmp) != trained.version.checkpoint_hash:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RuntimeError(f"the adapter files sent back for {trained.version.id} do not match its hash")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return trained.version.model_copy(update={"adapter_path": str(out)})
