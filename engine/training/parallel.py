"""Data-parallel helpers for the LoRA trainers, over ``torch.distributed`` when it is initialised.

What it is: ``World`` (this process's rank and the number of data-parallel workers; rank 0 of 1
when torch.distributed is not initialised), ``world()``, ``per_worker_batch`` (a global batch
split evenly over the workers), and the collective steps an explicit training loop needs to train
as one model on several workers: ``broadcast_params`` (every worker starts from rank 0's weights),
``all_reduce_sum`` (a few scalars summed over the workers; on the GPU under nccl) and
``sum_gradients`` (gradients summed in one flat all-reduce, so a loss normalised by the global
batch's size gives the gradient of the whole batch). TRL/transformers trainers need none of
these: they pick up torch.distributed themselves (DDP, data sharded per global batch). What it
is not: the launcher: who starts the workers and initialises torch.distributed (Ray Train, in
engine/runtime/training.py) is not this module's business, and it imports no ray. torch is
imported inside the functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class World:
    """This worker's place among the data-parallel workers."""

    rank: int = 0
    size: int = 1

    @property
    def parallel(self) -> bool:
        return self.size > 1


def world() -> World:
    """The data-parallel world of this process: torch.distributed's when initialised, else 1 worker."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return World(rank=dist.get_rank(), size=dist.get_world_size())
    return World()


def per_worker_batch(batch_size: int, size: int) -> int:
    """Each worker's share of a global batch of ``batch_size`` (options validation makes it even)."""
    if batch_size % size:
        raise ValueError(f"batch_size {batch_size} is the global batch: it must be a multiple of the "
                         f"{size} workers")
    return batch_size // size


def broadcast_params(params: Sequence[Any], w: World) -> None:
    """Every worker gets rank 0's values of ``params`` (DDP's start: one model, several copies)."""
    if not w.parallel:
        return
    import torch.distributed as dist

    for p in params:
        dist.broadcast(p.data, src=0)


def all_reduce_sum(values: Sequence[float], w: World) -> list[float]:
    """``values`` summed element-wise over the workers (unchanged with one worker)."""
    if not w.parallel:
        return [float(v) for v in values]
    import torch
    import torch.distributed as dist

    device = "cuda" if dist.get_backend() == "nccl" else "cpu"  # nccl reduces GPU tensors only
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return [float(v) for v in t.tolist()]


def sum_gradients(params: Sequence[Any], w: World) -> None:
    """Sum the gradients of ``params`` over the workers, in one flat all-reduce. Each worker's loss is
    its shard's share of the global batch's loss (normalised by the global count), so the sum is
    the gradient of the whole batch: the step one worker would take on it."""
    if not w.parallel:
        return
    import torch
    import torch.distributed as dist

    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    at = 0
    for p, g in zip(params, grads, strict=True):
        n = g.numel()
        p.grad = flat[at:at + n].view_as(p).to(p.dtype)
        at += n
