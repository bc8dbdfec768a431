"""Lending a run's service replicas' resources to a training that cannot be placed beside them.

What it is: ``free_per_node`` (what Ray has free on each live node), ``placeable_now(bundles)``,
and ``lend(pools, bundles)``, a context manager that finds the node of each replica of the run's
pools (the sampler's, the sandbox's), plans the fewest to stop (engine.runtime.placement
``plan_lending``, sampler replicas first, the last ones first, so replica 0 stays when it can),
says so on stderr, and lends them for the block through ``ReplicaPool.lend`` (each pool gets
fresh replicas back on exit, even when training raised). It yields whether it lent anything: not
when the bundles fit already, nor when even every replica would not make room (the training then
waits for the cluster and fails as before). What it is not: the decision to call it
(engine.runtime.training calls it when a training's bundles do not fit) or the stop and restart
of replicas (engine.runtime.pool).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import ray

from engine.runtime.placement import Need, needs, placeable, plan_lending

WHERE_S = 10.0  # how long a replica may take to say where it runs (a pending one holds nothing)


def free_per_node() -> dict[str, Need]:
    """CPUs and GPUs Ray has free on each live node (node id -> resources). A Ray Client driver
    (``ray://``) has no connection to the cluster's state: a task that holds nothing asks there."""
    from ray.util.client import ray as client

    if client.is_connected():  # type: ignore[no-untyped-call]
        free: dict[str, Need] = ray.get(ray.remote(num_cpus=0)(_free).remote())
        return free
    return _free()


def _free() -> dict[str, Need]:
    from ray._private.state import available_resources_per_node

    nodes: dict[str, dict[str, float]] = available_resources_per_node()  # type: ignore[no-untyped-call]
    return {node: {k: float(v) for k, v in res.items() if k in ("CPU", "GPU")} for node, res in nodes.items()}


def placeable_now(bundles: Sequence[Mapping[str, float]]) -> bool:
    """Whether ``bundles`` fit, each on one node, in what Ray has free now."""
    return placeable(bundles, free_per_node())


def replica_nodes(pool: Any) -> list[str | None]:
    """The node each replica of ``pool`` runs on; None for one that is lost or not placed."""
    refs = [a.where.remote() for a in pool.actors]
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=WHERE_S) if refs else ([], [])
    out: list[str | None] = []
    for ref in refs:
        try:
            out.append(str(ray.get(ref)[1]) if ref in ready else None)
        except ray.exceptions.RayError:
            out.append(None)
    return out


@contextmanager
def lend(pools: Sequence[tuple[str, Any]], bundles: Sequence[Mapping[str, float]]) -> Iterator[bool]:
    """Stop the fewest replicas of ``pools`` ((role, ReplicaPool), in the order they should lend)
    that make room for ``bundles`` for the block; True when it lent any."""
    held: list[tuple[str | None, Need]] = []
    owners: list[tuple[int, int]] = []  # (pool, replica) of each entry of ``held``
    for p, (_, pool) in enumerate(pools):
        for r, node in reversed(list(enumerate(replica_nodes(pool)))):
            held.append((node, needs(pool.resources)))
            owners.append((p, r))
    plan = plan_lending(bundles, free_per_node(), held)
    if not plan:
        yield False
        return
    lent: dict[int, list[int]] = {}
    for i in plan:
        p, r = owners[i]
        lent.setdefault(p, []).append(r)
    parts = " and ".join(f"{len(rs)} of {len(pools[p][1].actors)} {pools[p][0]}"
                         for p, rs in sorted(lent.items()))
    print(f"training needs {dict(bundles[0])} x {len(bundles)}: lending {parts} replicas until it ends",
          file=sys.stderr, flush=True)
    with ExitStack() as stack:
        for p, rs in sorted(lent.items()):
            stack.enter_context(pools[p][1].lend(rs))
        yield True
