"""Replicas of a run's sampler or sandbox: N long-lived actors behind one object with the stage's verbs.

What it is: ``ReplicaPool``, which starts N ``ServiceActor``s (each with the stage's declared
resources, restartable) and offers the verbs of ``ActorProxy`` (``sample``, ``execute``,
``model_version_for``, ``model_version``, ``close``). A batch is cut into chunks that are balanced
by outstanding work (requests x n in flight per replica): the next chunk goes to the least loaded
replica as results come back (``ray.wait``). A request is never split (its n samples stay on one
replica); requests sharing a prompt prefix prefer the same replica (``affinity_key`` % N) unless it
is more than a slack above the least loaded. Results come back in input order. LoRA adapters named
by a driver-side directory are shipped once per content hash through the object store; each
replica writes its own copy (engine.runtime.ray_services.ServiceActor). ``replicas: auto`` is as
many as the cluster's resources fit (a sampler) or one per node that fits it (a sandbox, pinned).
Faults: Ray restarts a replica whose process or node died and retries its calls (an unpinned one
lands on another node: the pool is refilled); a replica that cannot come back (pinned to a lost
node, or out of restarts) is dropped and its chunks go to the survivors (the pool shrinks).
``lend(indices)`` stops some replicas while a training needs their resources and starts fresh
ones after (engine.runtime.lending plans which).
What it is not: a cache (engine.sampling.cache sits in front of it), or a scheduler thread: the
driver only dispatches and waits inside a verb call.
"""

from __future__ import annotations

import hashlib
import math
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray

from engine.contracts import resources_of
from engine.runtime.placement import fits, fitting_replicas, needs
from engine.runtime.ray_services import ServiceActor, Shipped, actor_options

PREFIX_CHARS = 256  # the chat prefix that picks a replica (prefix-cache affinity)
CHUNKS_PER_REPLICA = 4  # a batch is cut into about this many chunks per replica...
MIN_CHUNK = 16  # ...of at least this much work (requests x n; jobs for a sandbox)...
MAX_CHUNK = 512  # ...and at most this much, unless one request alone is bigger
DEPTH = 2  # calls queued on a replica: one running, one waiting, so it never idles between chunks
GONE = (ray.exceptions.RayActorError, ray.exceptions.ActorUnschedulableError)  # a replica that is lost
READY_S = 60.0  # how long lent replicas' replacements are waited for (placed) before going on


def affinity_key(item: Any) -> int | None:
    """A number from the first ``PREFIX_CHARS`` characters of a request's chat or prompt; None for
    items without one (sandbox jobs), which any replica may take."""
    messages = getattr(item, "messages", None)
    text = "".join(f"{r}\x00{c}\x00" for r, c in messages) if messages else getattr(item, "prompt", None)
    if not text:
        return None
    return int.from_bytes(hashlib.sha256(text[:PREFIX_CHARS].encode()).digest()[:8], "big")


def work_of(item: Any) -> int:
    """The work an item adds to a replica: its ``n`` samples for a request, else 1."""
    params = getattr(item, "params", None)
    return int(getattr(params, "n", 1)) if params is not None else 1


@dataclass
class Chunk:
    indices: list[int]
    work: int = 0
    prefer: int | None = None


def plan_chunks(items: Sequence[Any], replicas: int, min_chunk: int = MIN_CHUNK,
                max_chunk: int = MAX_CHUNK) -> list[Chunk]:
    """Cut a batch into chunks: items grouped by their preferred replica (input order kept inside
    a group), each group cut where a chunk reaches the target work. One replica: one chunk."""
    works = [work_of(it) for it in items]
    if replicas == 1:
        return [Chunk(list(range(len(items))), sum(works), 0)] if items else []
    target = min(max(math.ceil(sum(works) / (replicas * CHUNKS_PER_REPLICA)), min_chunk), max_chunk)
    groups: dict[int | None, list[int]] = {}
    for i, item in enumerate(items):
        key = affinity_key(item)
        groups.setdefault(None if key is None else key % replicas, []).append(i)
    chunks: list[Chunk] = []
    for prefer, indices in groups.items():
        mine: list[Chunk] = []
        chunk = Chunk([], 0, prefer)
        for i in indices:
            chunk.indices.append(i)
            chunk.work += works[i]
            if chunk.work >= target:
                mine.append(chunk)
                chunk = Chunk([], 0, prefer)
        if chunk.indices and mine and chunk.work < target // 2:  # a small tail joins the chunk before
            mine[-1].indices += chunk.indices  # (a batched decoder runs it in the same pass)
            mine[-1].work += chunk.work
        elif chunk.indices:
            mine.append(chunk)
        chunks += mine
    return chunks


@dataclass
class Balancer:
    """Which replica takes which chunk next, from the work each replica has outstanding."""

    replicas: int
    slack: int
    load: list[int] = field(default_factory=list)
    calls: list[int] = field(default_factory=list)
    queues: dict[int | None, deque[Chunk]] = field(default_factory=dict)
    queued: dict[int | None, int] = field(default_factory=dict)  # work waiting in each queue
    dead: set[int] = field(default_factory=set)  # replicas lost during this batch

    def __post_init__(self) -> None:
        self.load = [0] * self.replicas
        self.calls = [0] * self.replicas

    def add(self, chunks: Sequence[Chunk]) -> None:
        for chunk in chunks:
            self.queues.setdefault(chunk.prefer, deque()).append(chunk)
            self.queued[chunk.prefer] = self.queued.get(chunk.prefer, 0) + chunk.work

    def next(self) -> tuple[int, Chunk] | None:
        """(replica, chunk) to dispatch now, or None when every replica is full or nothing is left."""
        free = sorted((r for r in range(self.replicas) if self.calls[r] < DEPTH and r not in self.dead),
                      key=lambda r: self.load[r])
        waiting = {k: q for k, q in self.queues.items() if q}
        if not free or not waiting:
            return None
        least = free[0]
        for r in free:  # a replica's own chunks, while it is within the slack of the least loaded
            if r in waiting and self.load[r] - self.load[least] <= self.slack:
                return self._take(r, r)
        source = None if None in waiting else max(waiting, key=lambda k: self.queued[k])
        return self._take(least, source)  # unpreferred work, else taken from the busiest queue

    def _take(self, replica: int, source: int | None) -> tuple[int, Chunk]:
        chunk = self.queues[source].popleft()
        self.queued[source] -= chunk.work
        self.load[replica] += chunk.work
        self.calls[replica] += 1
        return replica, chunk

    def done(self, replica: int, chunk: Chunk) -> None:
        self.load[replica] -= chunk.work
        self.calls[replica] -= 1

    def lost(self, replica: int, chunk: Chunk) -> None:
        """``replica`` died with ``chunk``: it takes nothing more; the chunk and the ones waiting
        for it go to any replica."""
        self.dead.add(replica)
        self.queued.pop(replica, None)
        self.add([Chunk(c.indices, c.work, None) for c in (chunk, *self.queues.pop(replica, ()))])


class ReplicaPool:
    """N actors of one stage, used like the stage: ``pool.sample(requests)``, ``pool.execute(jobs)``."""

    def __init__(self, actors: list[Any], name: str, resources: Any, min_chunk: int = MIN_CHUNK,
                 max_chunk: int = MAX_CHUNK, pins: Sequence[str | None] = ()) -> None:
        self.actors = actors
        self.pins = list(pins) or [None] * len(actors)  # the node each replica is pinned to, if any
        self.name = name
        self.resources = resources
        self.min_chunk, self.max_chunk = min_chunk, max_chunk
        self.work_done = [0] * len(actors)  # requests x n (or jobs) each replica has answered
        self._by_path: Shipped = {}
        self._by_hash: dict[str, Any] = {}
        self._versions: dict[tuple[str, str | None], str] = {}
        self._recipe: tuple[type[Any], Any, Any, bool] | None = None  # what ``create`` starts a replica from

    @classmethod
    def create(cls, stage_cls: type[Any], options: Any, context: Any, replicas: int | str = 1,
               reserved: Sequence[tuple[str | None, Any]] = (), **chunking: int) -> ReplicaPool:
        """Start the replicas. ``replicas="auto"``: one per node that fits a sandbox (pinned there),
        or as many samplers as the nodes' resources fit beside ``reserved`` (node id or None, Resources)."""
        res = resources_of(stage_cls, options)
        nodes = [n for n in ray.nodes() if n.get("Alive")] if replicas == "auto" else []  # type: ignore[no-untyped-call]
        pins: list[str | None]
        if replicas == "auto" and stage_cls.kind == "sandbox":
            pins = [n["NodeID"] for n in nodes if fits(needs(res), n["Resources"]) >= 1] or [None]
        else:
            count = fitting_replicas(res, nodes, reserved) if replicas == "auto" else int(replicas)
            pins = [None] * count
        pool = cls([], stage_cls.name, res, pins=pins, **chunking)
        pool._recipe = (stage_cls, options, context, len(pins) > 1)
        pool.actors, pool.work_done = [pool._start(pin) for pin in pins], [0] * len(pins)
        return pool

    def _start(self, pin: str | None) -> Any:
        """A new replica actor (pinned to node ``pin``, if any), as ``create`` starts them."""
        assert self._recipe is not None, "only a pool made by ReplicaPool.create starts replicas"
        stage_cls, options, context, spread = self._recipe
        opts = actor_options(self.resources, pin, spread=spread)
        return ServiceActor.options(**opts).remote(stage_cls, options, context)  # type: ignore[attr-defined]

    @contextmanager
    def lend(self, indices: Sequence[int]) -> Iterator[None]:
        """Stop the replicas at ``indices`` for the block (a training takes their resources); on exit,
        even when the block raised, start fresh ones in their places (same stage, options, context,
        resources and pin) and wait until they are placed. A fresh replica gets the adapters it is
        asked for on first use, as any replica."""
        lent = sorted(set(indices))
        pins, stopped = [self.pins[i] for i in lent], [self.actors[i] for i in lent]
        for i in reversed(lent):
            del self.actors[i], self.pins[i], self.work_done[i]
        _stop(stopped)
        try:
            yield
        finally:
            for i, pin in zip(lent, pins, strict=True):
                self.actors.insert(i, self._start(pin))
                self.pins.insert(i, pin)
                self.work_done.insert(i, 0)
            ray.wait([self.actors[i].where.remote() for i in lent], num_returns=len(lent), timeout=READY_S)

    def reservations(self) -> list[tuple[str | None, Any]]:
        """(node id or None, resources) of each replica, for ``create(reserved=...)`` of another pool."""
        return [(pin, self.resources) for pin in self.pins]

    def _run(self, method: str, items: Sequence[Any]) -> list[Any]:
        items = list(items)
        out: list[Any] = [None] * len(items)
        balancer = Balancer(len(self.actors), slack=self.min_chunk)
        balancer.add(plan_chunks(items, len(self.actors), self.min_chunk, self.max_chunk))
        in_flight: dict[Any, tuple[int, Chunk]] = {}
        adapters = {a for it in items if (a := getattr(it, "adapter", None)) is not None}
        shipped = {a: s for a in adapters if (s := self._ship(a)) is not None}
        while True:
            while (step := balancer.next()) is not None:
                replica, chunk = step
                batch = [items[i] for i in chunk.indices]
                chunk_adapters = {a for it in batch if (a := getattr(it, "adapter", None)) in shipped}
                ref = self.actors[replica].run.remote(method, batch, {a: shipped[a] for a in chunk_adapters})
                in_flight[ref] = step
            if not in_flight:
                self._drop(balancer.dead)
                return out
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            for ref in ready:
                replica, chunk = in_flight.pop(ref)
                balancer.done(replica, chunk)
                try:
                    answers = ray.get(ref)
                except GONE:  # the chunk is redone by a survivor; the lost call's answers never count
                    balancer.lost(replica, chunk)
                    if len(balancer.dead) == len(self.actors):
                        raise
                    continue
                if len(answers) != len(chunk.indices):
                    raise RuntimeError(f"{self.name!r} answered {len(answers)} of {len(chunk.indices)} items")
                for i, answer in zip(chunk.indices, answers, strict=True):
                    out[i] = answer
                self.work_done[replica] += chunk.work

    def _drop(self, dead: set[int]) -> None:
        """Forget the replicas lost in a batch: later batches are planned over the survivors."""
        for r in sorted(dead, reverse=True):
            ray.kill(self.actors[r])
            del self.actors[r], self.pins[r], self.work_done[r]

    def sample(self, requests: Sequence[Any]) -> list[Any]:
        return self._run("sample", requests)

    def execute(self, jobs: Sequence[Any]) -> list[Any]:
        return self._run("execute", jobs)

    def _ship(self, adapter: str | None) -> tuple[str, Any] | None:
        """Put a driver-side adapter directory in the object store once per content hash; a path
        shipped before stays served after the driver's copy is gone. None: not a local adapter."""
        if adapter is None:
            return None
        path = Path(adapter).expanduser()
        if path.is_dir():
            from engine.sampling.resolver import adapter_hash
            from engine.training.protocol import adapter_files

            if adapter_files(path):
                digest = adapter_hash(str(path))
                if digest not in self._by_hash:
                    files = {f.name: f.read_bytes() for f in sorted(path.iterdir()) if f.is_file()}
                    self._by_hash[digest] = ray.put(files)
                self._by_path[adapter] = (digest, self._by_hash[digest])
        return self._by_path.get(adapter)

    def model_version_for(self, adapter: str | None) -> str:
        shipped = self._ship(adapter)
        key = ("hash", shipped[0]) if shipped else ("path", adapter)
        if key not in self._versions:
            given: Shipped = {adapter: shipped} if shipped and adapter else {}
            self._versions[key] = str(ray.get(self.actors[0].version_in.remote(adapter, given)))
        return self._versions[key]

    @property
    def model_version(self) -> Any:
        return ray.get(self.actors[0].attr.remote("model_version"))

    def close(self) -> None:
        _stop(self.actors)


def _stop(actors: Sequence[Any]) -> None:
    """Close replicas (their stage's ``close``, so a GPU engine lets go cleanly), then kill them."""
    try:
        ray.get([a.shutdown.remote() for a in actors], timeout=60)
    except (ray.exceptions.RayError, ray.exceptions.GetTimeoutError):
        pass
    for actor in actors:
        ray.kill(actor)

