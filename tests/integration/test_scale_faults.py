"""Faults at scale (issue 13, part 7): a node that holds a replica dies while a stage runs.

A ``ray.cluster_utils.Cluster`` of a head with no CPUs and three worker nodes of one CPU each, so
that a replica declaring one CPU fits once per worker node (placement is steered by the nodes'
CPUs: the pool asks Ray for a stage's declared resources only). The head's health checks are
short, so that a killed node (``remove_node(allow_graceful=False)``: its raylet and its workers are
SIGKILLed, as in a crash) is declared dead within about a second. Each stage runs twice on the
same pool with the same inputs: undisturbed, then with one replica's node removed while its calls
are in flight. The answers must be the same, one per input in input order, compared by count and
by content hash (nothing lost, nothing duplicated). A sampler replica is not pinned: Ray restarts
it on the spare node and retries its calls, so the pool is refilled. A sandbox worker is pinned to
its node: the pool drops it, redoes its chunks on the survivors, and shrinks.
"""

from __future__ import annotations

import hashlib
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest

from engine.contracts import Resources, StageContext
from engine.sampling.protocol import SampleRequest
from plugins.sampler_scripted import ScriptedOptions, ScriptedSampler

FAST_HEALTH_CHECKS = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500,
                      "health_check_failure_threshold": 3}
WORKERS = 3


class OneCpuSampler(ScriptedSampler):
    """The scripted sampler declaring a whole CPU: one replica per worker node here."""

    name = "one-cpu-scripted"
    resources: ClassVar[Resources] = Resources(num_cpus=1.0)


@pytest.fixture(scope="module")
def cluster(make_cluster: Any) -> Iterator[Any]:
    head = {"num_cpus": 0, "_system_config": FAST_HEALTH_CHECKS}
    with make_cluster(head, [{"num_cpus": 1}] * WORKERS, sys.modules[__name__]) as made:
        yield made


def workers_alive(cluster: Any) -> list[Any]:
    """The cluster's worker nodes (not the head) whose raylet Ray still counts as alive, topped up
    to ``WORKERS`` (a test before may have removed one)."""
    import ray

    def alive() -> list[Any]:
        ids = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
        return [w for w in cluster.worker_nodes if w.node_id in ids]

    while len(alive()) < WORKERS:
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    return alive()


def where(pool: Any) -> list[tuple[int, str]]:
    import ray

    return list(ray.get([a.where.remote() for a in pool.actors], timeout=60))


def digests(results: list[Any], fields: Callable[[Any], Any]) -> Counter[str]:
    return Counter(hashlib.sha256(repr(fields(r)).encode()).hexdigest() for r in results)


def remove_mid_stage(cluster: Any, node: Any, after_s: float, run: Callable[[], list[Any]]) -> list[Any]:
    """``run()`` while ``node`` is killed ``after_s`` into it; its results."""
    def kill() -> None:
        time.sleep(after_s)
        cluster.remove_node(node, allow_graceful=False)

    killer = threading.Thread(target=kill)
    killer.start()
    try:
        return run()
    finally:
        killer.join()


def test_sampler_node_lost_mid_stage_pool_is_refilled(cluster: Any) -> None:
    from engine.runtime.pool import ReplicaPool

    nodes = workers_alive(cluster)
    options = ScriptedOptions(order="hash", delay_s=0.5, responses=[f"answer {k}" for k in range(7)])
    pool = ReplicaPool.create(OneCpuSampler, options, StageContext(), 2, min_chunk=4)
    try:
        before = where(pool)
        assert len({node for _, node in before}) == 2, "the replicas sit on two nodes"
        requests = [SampleRequest.chat(f"question {i}", n=1 + i % 3, temperature=0.7, seed=i)
                    for i in range(160)]
        t0 = time.monotonic()
        undisturbed = pool.sample(requests)
        took = time.monotonic() - t0
        assert took > 2.0, f"the stage lasts long enough to be hit mid-way ({took:.1f} s)"

        victim = next(n for n in nodes if n.node_id == before[0][1])
        spare = next(n for n in nodes if n.node_id not in {node for _, node in before})
        faulted = remove_mid_stage(cluster, victim, took / 3, lambda: pool.sample(requests))

        def fields(r: Any) -> Any:
            return r.model_version, [(c.text, c.tokens) for c in r.completions]

        assert len(faulted) == len(undisturbed) == len(requests)
        assert [len(r.completions) for r in faulted] == [q.params.n for q in requests]
        assert digests(faulted, fields) == digests(undisturbed, fields)  # nothing lost or duplicated
        assert [fields(r) for r in faulted] == [fields(r) for r in undisturbed]  # and in input order
        after = where(pool)  # refilled: Ray restarted the lost replica on the spare node
        assert len(pool.actors) == 2
        assert after[1] == before[1] and after[0][1] == spare.node_id and after[0][0] != before[0][0]
        assert pool.sample(requests[:20]) == undisturbed[:20]
    finally:
        pool.close()


def test_sandbox_node_lost_mid_stage_pool_shrinks(cluster: Any) -> None:
    from engine.runtime.pool import ReplicaPool
    from plugins.sandbox_local import RlimitOptions, RlimitSandbox
    from sandbox.protocol import Job

    nodes = workers_alive(cluster)
    pool = ReplicaPool.create(RlimitSandbox, RlimitOptions(concurrency=1), StageContext(), "auto",
                              min_chunk=2)
    try:
        before = where(pool)
        pins = [pin for pin in pool.pins if pin is not None]
        assert sorted(node for _, node in before) == sorted(n.node_id for n in nodes) == sorted(pins)
        jobs = [Job(program=f"import time\ntime.sleep(0.15)\nprint({i})", tests=f"assert {i} % 5 != 4")
                for i in range(48)]
        t0 = time.monotonic()
        undisturbed = pool.execute(jobs)
        took = time.monotonic() - t0
        assert took > 2.0, f"the stage lasts long enough to be hit mid-way ({took:.1f} s)"
        assert [r.status for r in undisturbed] == ["failed" if i % 5 == 4 else "passed" for i in range(48)]

        lost = before[1][1]
        victim = next(n for n in nodes if n.node_id == lost)
        faulted = remove_mid_stage(cluster, victim, took / 3, lambda: pool.execute(jobs))

        def fields(r: Any) -> Any:
            return r.status, r.stdout, r.failed_tests, r.n_tests

        assert len(faulted) == len(undisturbed) == len(jobs)
        assert digests(faulted, fields) == digests(undisturbed, fields)  # nothing lost or duplicated
        assert [fields(r) for r in faulted] == [fields(r) for r in undisturbed]  # and in input order
        assert len(pool.actors) == len(pool.pins) == len(pool.work_done) == 2, "the pool shrank"
        assert sorted(p for p in pool.pins if p is not None) == sorted(n for _, n in before if n != lost)
        assert sorted(where(pool)) == sorted(w for w in before if w[1] != lost)
        again = pool.execute(jobs[:6])  # the next batch is planned over the survivors alone
        assert [fields(r) for r in again] == [fields(r) for r in undisturbed[:6]]
    finally:
        pool.close()


def test_a_lost_replica_takes_nothing_more_and_its_chunks_go_to_any_replica() -> None:
    from engine.runtime.pool import Balancer, Chunk

    balancer = Balancer(3, slack=4)
    balancer.add([Chunk([i], 4, prefer=i % 3) for i in range(9)])
    first = [balancer.next() for _ in range(6)]  # two calls on each replica
    assert all(step is not None for step in first) and balancer.next() is None
    replica, chunk = next(s for s in first if s is not None and s[0] == 1)
    balancer.done(replica, chunk)
    balancer.lost(1, chunk)  # replica 1 died with this chunk; its queued chunk goes too
    assert 1 not in balancer.queues and {c.indices[0] for c in balancer.queues[None]} == {chunk.indices[0], 7}
    for r, c in [s for s in first if s is not None and s != (replica, chunk)]:
        balancer.done(r, c)
    rest = []
    while (step := balancer.next()) is not None:
        rest.append(step)
        balancer.done(*step)
    assert {r for r, _ in rest} <= {0, 2}, "nothing more for the lost replica"
    assert sorted(c.indices[0] for _, c in rest) == sorted([chunk.indices[0], 6, 7, 8])
