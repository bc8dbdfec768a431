"""Ray placement of a run's services: the sampler and the sandbox as restartable actors.

What it is: ``start_ray`` (a local Ray bound to 127.0.0.1, or joining ``runtime.address``),
``ServiceActor`` (one stage instance living in an actor, created with the resources the stage
declares, restarted by Ray if its process dies, its in-flight batch retried), and ``ActorProxy``,
which gives the driver an object with the stage's verb so loops and stages never know whether
a service is local or remote. What it is not: a scheduler of records: work reaches an actor one
whole batch per call.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
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
    ray.init(num_cpus=int(cpus + 0.999), include_dashboard=False, _node_ip_address="127.0.0.1",
             log_to_driver=False, logging_level=logging.ERROR)
    return True


@ray.remote
class ServiceActor:
    """Holds one stage instance (a sampler or a sandbox) and runs its verbs on whole batches."""

    def __init__(self, cls: type, options: Any, context: Any) -> None:
        from engine.contracts import build_stage

        self.stage = build_stage(cls, options, context)

    def call(self, method: str, *args: Any) -> Any:
        return getattr(self.stage, method)(*args)

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
        res = stage_cls.resources
        actor = ServiceActor.options(  # type: ignore[attr-defined]
            num_cpus=res.num_cpus, num_gpus=res.num_gpus, max_restarts=MAX_RESTARTS,
            max_task_retries=TASK_RETRIES).remote(stage_cls, options, context)
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
