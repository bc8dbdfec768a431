"""Ray placement of a run's services: the sampler and the sandbox as restartable actors.

What it is: ``start_ray`` (a local Ray bound to 127.0.0.1, or joining ``runtime.address``),
``ServiceActor`` (one stage instance living in an actor, created with the resources the stage
declares, restarted by Ray if its process dies, its in-flight batch retried; it materialises the
LoRA adapters shipped to it through the object store into its own temp directory), and
``ActorProxy``, which gives the driver an object with the stage's verb so loops and stages never
know whether a service is local or remote. What it is not: the balancing of work over several
actors (engine.runtime.pool); work reaches an actor one batch per call.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray

RAY_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_DEDUP_LOGS": "0",
    "RAY_worker_niceness": "0",  # Ray nices workers to 15; our actors do the heavy work
    "OMP_WAIT_POLICY": "PASSIVE",  # see engine.cli.app.main: spinning OpenMP threads starve
}
MAX_RESTARTS = 3
TASK_RETRIES = 3


def start_ray(address: str | None, num_cpus: float | None, needed_cpus: float) -> bool:
    """Connect to ``address`` or start a local Ray on 127.0.0.1. Returns True if we started it.

    A local Ray offers at least the CPUs the run's services declare (logical CPUs: on a 2-core
    machine a sampler declaring 2 and a sandbox declaring 1 still both get placed).
    """
    for key, value in RAY_ENV.items():
        os.environ.setdefault(key, value)
    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.ERROR)
        return False
    cpus = max(float(num_cpus or os.cpu_count() or 1), needed_cpus)
    # address="local": a new local Ray even when a `ray start` cluster runs on this machine (without
    # it ray.init joins that cluster and refuses num_cpus)
    ray.init(address="local", num_cpus=int(cpus + 0.999), include_dashboard=False,
             _node_ip_address="127.0.0.1", log_to_driver=False, logging_level=logging.ERROR)
    return True


Shipped = dict[str, tuple[str, Any]]
"""Adapters shipped through the object store: driver-side path -> (content hash, ObjectRef of
``{file name: bytes}``)."""


def actor_options(resources: Any, node_id: str | None = None, spread: bool = False) -> dict[str, Any]:
    """``ServiceActor.options`` for a stage's declared resources: restartable, its calls retried;
    pinned to ``node_id`` (hard affinity) or spread over the nodes when asked."""
    opts: dict[str, Any] = {"num_cpus": resources.num_cpus, "num_gpus": resources.num_gpus,
                            "max_restarts": MAX_RESTARTS, "max_task_retries": TASK_RETRIES}
    if node_id is not None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        opts["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node_id, soft=False)
    elif spread:
        opts["scheduling_strategy"] = "SPREAD"
    return opts


@ray.remote
class ServiceActor:
    """Holds one stage instance (a sampler or a sandbox) and runs its verbs on batches."""

    def __init__(self, cls: type, options: Any, context: Any) -> None:
        from engine.contracts import build_stage

        self.stage = build_stage(cls, options, context)
        self._adapter_root: str | None = None
        self._adapters: dict[str, str] = {}  # content hash -> this actor's local copy

    def call(self, method: str, *args: Any) -> Any:
        return getattr(self.stage, method)(*args)

    def run(self, method: str, items: list[Any], shipped: Shipped) -> Any:
        """``method(items)`` after pointing each request's adapter at this actor's local copy."""
        if shipped:
            items = [it.model_copy(update={"adapter": self._local(it.adapter, shipped)})
                     if getattr(it, "adapter", None) in shipped else it for it in items]
        return getattr(self.stage, method)(items)

    def _local(self, adapter: str, shipped: Shipped) -> str:
        """The local directory of a shipped adapter, written on first use (once per content hash)."""
        digest, ref = shipped[adapter]
        if digest not in self._adapters:
            if self._adapter_root is None:
                self._adapter_root = tempfile.mkdtemp(prefix="autodidact-adapters-")
            final = Path(self._adapter_root) / digest
            part = Path(self._adapter_root) / f"{digest}.part"
            shutil.rmtree(part, ignore_errors=True)
            part.mkdir()
            files: dict[str, bytes] = ray.get(ref)  # type: ignore[assignment]
            for name, data in files.items():
                (part / name).write_bytes(data)
            part.rename(final)
            self._adapters[digest] = str(final)
        return self._adapters[digest]

    def version_in(self, adapter: str | None, shipped: Shipped) -> str:
        """The model version for ``adapter``, read from this actor's copy when it was shipped."""
        from engine.sampling.cache import version_of

        local = self._local(adapter, shipped) if adapter is not None and adapter in shipped else adapter
        return version_of(self.stage, local)

    def where(self) -> tuple[int, str]:
        """(pid, node id) of this actor."""
        return os.getpid(), ray.get_runtime_context().get_node_id()

    def shutdown(self) -> None:
        """Close the stage (when it can) and remove the local adapter copies."""
        close = getattr(self.stage, "close", None)
        try:
            if callable(close):
                close()
        finally:
            if self._adapter_root is not None:
                shutil.rmtree(self._adapter_root, ignore_errors=True)

    def attr(self, name: str) -> Any:
        return getattr(self.stage, name)

    def version(self, adapter: str | None) -> str:
        from engine.sampling.cache import version_of

        return version_of(self.stage, adapter)

    def pid(self) -> int:
        return os.getpid()


@dataclass
class ActorProxy:
    """Driver-side stand-in for a service actor: ``proxy.sample(batch)`` runs remotely."""

    actor: Any
    name: str
    resources: Any

    @classmethod
    def create(cls, stage_cls: type[Any], options: Any, context: Any) -> ActorProxy:
        from engine.contracts import resources_of

        res = resources_of(stage_cls, options)
        actor = ServiceActor.options(**actor_options(res)).remote(  # type: ignore[attr-defined]
            stage_cls, options, context)
        return cls(actor=actor, name=stage_cls.name, resources=res)

    def _call(self, method: str, *args: Any) -> Any:
        return ray.get(self.actor.call.remote(method, *args))

    def sample(self, requests: Any) -> Any:
        return self._call("sample", list(requests))

    def execute(self, jobs: Any) -> Any:
        return self._call("execute", list(jobs))

    def model_version_for(self, adapter: str | None) -> str:
        return str(ray.get(self.actor.version.remote(adapter)))

    @property
    def model_version(self) -> Any:
        return ray.get(self.actor.attr.remote("model_version"))

    def close(self) -> None:
        try:
            self._call("close")
        except (AttributeError, ray.exceptions.RayError):
            pass
        ray.kill(self.actor)
