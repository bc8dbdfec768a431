"""Services a run shares across its stages: the samplers and the sandbox, started once.

What it is: construction of the run's policy sampler, its named samplers (config ``samplers``,
e.g. a teacher), each wrapped in the request cache under its name, and the sandbox from the
resolved config, and their shutdown. On Ray each is a pool of ``replicas`` actors
(engine.runtime.pool); in process, one instance. ``lend(bundles)`` lends the pools' resources to
a training that does not fit beside them (engine.runtime.lending). What it is not: the Ray
placement and balancing of these services, which belong to engine.runtime.ray_services and
engine.runtime.pool.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.config import ResolvedConfig
from engine.contracts import StageContext, build_stage, resources_of
from engine.manager import PluginManager


@dataclass
class Services:
    sampler: Any = None
    sandbox: Any = None
    samplers: dict[str, Any] = field(default_factory=dict)  # the named ones, besides the policy's
    started_ray: bool = False
    clock: Clock = field(default_factory=lambda: Clock())
    pools: list[tuple[str, Any]] = field(default_factory=list)  # (role, ReplicaPool) on Ray, sampler first

    @classmethod
    def start(cls, resolved: ResolvedConfig, run_dir: Path, pm: PluginManager | None = None) -> Services:
        """Build the sampler (behind the request cache) and sandbox: as Ray actors when
        ``runtime.ray`` is on (the default), else in this process."""
        cfg = resolved.config
        ctx = StageContext(seed=cfg.seed, model_name=cfg.model.name, run_dir=run_dir, plugins=pm)
        bound = [b for b in (resolved.sampler, resolved.sandbox) if b is not None]
        named: dict[str, Any] = {}
        if cfg.runtime.ray:
            from engine.runtime.pool import ReplicaPool
            from engine.runtime.ray_services import start_ray

            counts = [cfg.sampler.replicas, cfg.sandbox.replicas if cfg.sandbox else 1]
            needed = [resources_of(b.info.cls, b.options).num_cpus * (n if isinstance(n, int) else 1)
                      for b, n in zip(bound, counts, strict=False)]  # "auto": at least one
            needed += [resources_of(s.info.cls, s.options).num_cpus * _fixed(cfg.samplers[n].replicas)
                       for n, s in resolved.samplers.items()]
            from engine.runtime.training import training_cpus

            # a local Ray offers what the services hold for the whole run plus room for a training
            started = start_ray(cfg.runtime.address, cfg.runtime.num_cpus,
                                sum(needed) + training_cpus(resolved))
            box = resolved.sandbox
            made: list[Any] = [] if box is None else [ReplicaPool.create(box.info.cls, box.options, ctx,
                                                                          counts[1])]
            reserved = made[0].reservations() if made else []  # "auto" samplers fit beside the sandbox
            for name, s in resolved.samplers.items():  # each its own pool, placed before the policy's
                named[name] = ReplicaPool.create(s.info.cls, s.options, ctx, cfg.samplers[name].replicas,
                                                 reserved)
                reserved = reserved + named[name].reservations()
            made.insert(0, ReplicaPool.create(resolved.sampler.info.cls, resolved.sampler.options, ctx,
                                              counts[0], reserved))
        else:
            started = False
            made = [build_stage(b.info.cls, b.options, ctx) for b in bound]
            named = {n: build_stage(s.info.cls, s.options, ctx) for n, s in resolved.samplers.items()}
        clock = Clock()
        sampler = Timed(_with_cache(made[0], run_dir), clock)
        sandbox = Timed(made[1], clock) if len(made) > 1 else None
        pools = list(zip(("sampler", "sandbox"), made, strict=False)) if cfg.runtime.ray else []
        pools += [("sampler", p) for p in named.values()] if cfg.runtime.ray else []
        samplers = {n: Timed(_with_cache(s, run_dir, n), clock) for n, s in named.items()}
        return cls(sampler=sampler, sandbox=sandbox, samplers=samplers, started_ray=started, clock=clock,
                   pools=pools)

    @contextmanager
    def lend(self, bundles: list[dict[str, float]]) -> Iterator[bool]:
        """For the block, stop the fewest sampler (then sandbox) replicas that make room for a
        training's ``bundles``; they come back afterwards. True when any were lent (never off Ray)."""
        if not self.pools:
            yield False
            return
        from engine.runtime.lending import lend

        with lend(self.pools, bundles) as lent:
            yield lent

    def stop(self) -> None:
        for svc in (self.sampler, self.sandbox, *self.samplers.values()):
            close = getattr(svc, "close", None)
            if callable(close):
                close()
        if self.started_ray:
            import ray

            ray.shutdown()


def _with_cache(sampler: Any, run_dir: Path, name: str = "policy") -> Any:
    """Wrap the sampler in the request cache kept beside the lineage store (its rows say which
    named sampler made them)."""
    from engine.sampling.cache import CachedSampler, SampleCache

    return CachedSampler(sampler, SampleCache.in_run_dir(run_dir), name=name)


def _fixed(replicas: int | str) -> int:
    return replicas if isinstance(replicas, int) else 1  # "auto": at least one


@dataclass
class Clock:
    """Seconds during which at least one service call (sampling, sandboxing) was running: what is
    not orchestration. Streamed stages call services from several threads at once, so overlapping
    calls count once (``enter``/``leave``). bench/runtime reports wall time minus this."""

    seconds: float = 0.0
    _busy: int = 0
    _since: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def enter(self) -> None:
        with self._lock:
            if self._busy == 0:
                self._since = time.perf_counter()
            self._busy += 1

    def leave(self) -> None:
        with self._lock:
            self._busy -= 1
            if self._busy == 0:
                self.seconds += time.perf_counter() - self._since


class Timed:
    """Adds the time of each ``sample`` / ``execute`` call to a clock; else transparent."""

    def __init__(self, service: Any, clock: Clock) -> None:
        self._service = service
        self._clock = clock

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._service, attr)

    def _timed(self, verb: str, batch: Any) -> Any:
        self._clock.enter()
        try:
            return getattr(self._service, verb)(batch)
        finally:
            self._clock.leave()

    def sample(self, requests: Any) -> Any:
        return self._timed("sample", requests)

    def execute(self, jobs: Any) -> Any:
        return self._timed("execute", jobs)
