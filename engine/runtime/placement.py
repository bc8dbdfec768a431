"""Placement arithmetic: what a stage needs, how often it fits on nodes, which replicas to lend.

What it is: pure functions over resource dicts (``{"CPU": 2.0, "GPU": 1.0}``) and nodes' free
resources: ``needs`` (a ``Resources`` as such a dict), ``fits`` (how many times a need fits in
what a node has), ``fitting_replicas`` (how many replicas of a stage the nodes hold: ``replicas:
auto``), and ``plan_lending``: which of a run's service replicas to stop so that a training's
bundles (one per worker) can be placed, the fewest that will do. What it is not: anything that
asks Ray (engine.runtime.lending and engine.runtime.pool do, and hand the answers in here).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

Need = dict[str, float]
"""Resources by Ray's name for them: ``{"CPU": 2.0, "GPU": 1.0}``."""


def needs(resources: Any) -> Need:
    """A ``Resources`` (num_cpus, num_gpus) as what Ray is asked for; zero amounts left out."""
    return {k: v for k, v in (("CPU", resources.num_cpus), ("GPU", resources.num_gpus)) if v > 0}


def fits(need: Mapping[str, float], have: Mapping[str, float]) -> int:
    """How many times ``need`` fits in ``have`` (a stage that needs nothing fits any node)."""
    return min((int((have.get(k, 0.0) + 1e-9) // v) for k, v in need.items()), default=1 << 30)


def fitting_replicas(resources: Any, nodes: Sequence[dict[str, Any]],
                     reserved: Sequence[tuple[str | None, Any]] = ()) -> int:
    """Replicas of a stage the nodes hold beside ``reserved``: per node (a replica never spans
    nodes), bounded by the cluster's totals. A replica counts at least one CPU, so a stage declaring
    a fraction of a core does not get a process per fraction. At least 1."""
    need = needs(resources)
    need["CPU"] = max(need.get("CPU", 0.0), 1.0)
    free = {n["NodeID"]: dict(n["Resources"]) for n in nodes}
    total: dict[str, float] = {}
    for have in free.values():
        for k, v in have.items():
            total[k] = total.get(k, 0.0) + v
    for node, res in reserved:
        for k, v in needs(res).items():
            total[k] = total.get(k, 0.0) - v
            if node in free:
                free[node][k] = free[node].get(k, 0.0) - v
    return max(1, min(sum(fits(need, have) for have in free.values()), fits(need, total)))


def placeable(bundles: Sequence[Mapping[str, float]], free: Mapping[str, Mapping[str, float]]) -> bool:
    """Whether ``bundles`` fit in what the nodes have ``free`` (node id -> resources), each bundle
    on one node."""
    return plan_lending(bundles, free, []) == []


def plan_lending(bundles: Sequence[Mapping[str, float]], free: Mapping[str, Mapping[str, float]],
                 held: Sequence[tuple[str | None, Mapping[str, float]]]) -> list[int] | None:
    """The replicas to stop so that ``bundles`` (a training's, one per worker, alike) can be placed
    beside what the nodes have ``free`` (node id -> resources): indices into ``held`` (each
    replica's node, None when unknown, and the resources it holds), sorted, the fewest that will
    do. A bundle never spans nodes; a node's replicas are stopped in ``held``'s order, and among
    plans as small, the one whose replicas come first in ``held`` wins (so ``held``'s order is the
    order of preference). ``[]``: the bundles fit already; None: stopping every replica is not
    enough."""
    if not bundles:
        return []
    shape = {k: max(b.get(k, 0.0) for b in bundles) for b in bundles for k in b}
    shape = {k: v for k, v in shape.items() if v > 0}
    count = len(bundles)
    nodes = list(dict.fromkeys([*(n for n, _ in held if n is not None), *free]))
    best: dict[int, list[int]] = {0: []}  # bundles placed so far -> the fewest replicas stopped for it
    for node in nodes:
        have = dict(free.get(node, {}))
        steps = [(fits(shape, have), list[int]())]  # (bundles this node holds, replicas stopped on it)
        for i in (i for i, (n, _) in enumerate(held) if n == node):
            for k, v in held[i][1].items():
                have[k] = have.get(k, 0.0) + v
            steps.append((fits(shape, have), [*steps[-1][1], i]))
        after: dict[int, list[int]] = {}
        for placed, stopped in best.items():
            for holds, more in steps:
                total, plan = min(count, placed + holds), sorted(stopped + more)
                if total not in after or (len(plan), plan) < (len(after[total]), after[total]):
                    after[total] = plan
        best = after
    return best.get(count)
