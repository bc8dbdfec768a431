"""Sampler and sandbox replicas on Ray (engine.runtime.pool): order, balance, affinity, adapters, nodes.

One local Ray is shared by the module; the multi-node sandbox test (last) brings its own
``ray.cluster_utils.Cluster``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections import Counter
from pathlib import Path

import pytest

from engine.contracts import StageContext
from engine.sampling.protocol import Completion, SampleRequest, SampleResult
from engine.training.protocol import adapter_files_hash
from plugins.sampler_scripted import ScriptedOptions, ScriptedSampler

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "demo-scripted.yaml"


class PidSampler(ScriptedSampler):
    """Echoes each prompt behind the pid of the replica that answered it."""

    name = "pid-scripted"

    def _text(self, request: SampleRequest, i: int) -> str:
        return f"{os.getpid()}:{request.messages[-1][1] if request.messages else request.prompt}"


class AdapterProbe(ScriptedSampler):
    """Reads the adapter directory it is handed and reports its path, its content hash and pid."""

    name = "adapter-probe"

    def sample(self, requests):  # type: ignore[no-untyped-def]
        out = []
        for req in requests:
            seen = {"pid": os.getpid(), "path": req.adapter,
                    "hash": adapter_files_hash(req.adapter) if req.adapter else None}
            out.append(SampleResult(completions=[Completion(text=json.dumps(seen))],
                                    model_version=self.model_version_for(req.adapter)))
        return out


@pytest.fixture(scope="module")
def local_ray():
    import ray

    from engine.runtime.ray_services import start_ray

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the test samplers above
    start_ray(None, 4, 1)
    yield ray
    ray.shutdown()


def make_pool(cls, replicas, **options):  # type: ignore[no-untyped-def]
    from engine.runtime.pool import ReplicaPool

    return ReplicaPool.create(cls, ScriptedOptions(**options), StageContext(), replicas, min_chunk=4)


def pid_of(result: SampleResult) -> str:
    return result.completions[0].text.split(":", 1)[0]


def test_chunks_never_split_a_request_and_balance_by_work() -> None:
    from engine.runtime.pool import Balancer, plan_chunks

    requests = [SampleRequest.chat(f"q{i}", n=1 + (i * 7) % 40) for i in range(300)]
    chunks = plan_chunks(requests, 4, min_chunk=8, max_chunk=64)
    assert sorted(i for c in chunks for i in c.indices) == list(range(300))  # each request once, whole
    assert all(c.work == sum(requests[i].params.n for i in c.indices) for c in chunks)
    assert all(c.work < 64 + 40 for c in chunks)
    assert plan_chunks(requests, 1)[0].indices == list(range(300))  # one replica: today's one batch
    balancer = Balancer(4, slack=8)
    balancer.add(chunks)
    first = [balancer.next() for _ in range(8)]  # two calls per replica, then it waits
    assert balancer.next() is None and sorted(Counter(r for r, _ in first).values()) == [2, 2, 2, 2]
    replica, chunk = first[0]
    balancer.done(replica, chunk)
    step = balancer.next()
    assert step is not None and step[0] == replica, "a finished replica takes the next chunk"


def test_order_n_together_and_load_spread(local_ray) -> None:
    pool = make_pool(PidSampler, 4, delay_s=0.02)
    try:
        requests = [SampleRequest.chat(f"question {i}", n=1 + i % 3) for i in range(120)]
        out = pool.sample(requests)
        assert [r.completions[0].text.split(":", 1)[1] for r in out] == [f"question {i}" for i in range(120)]
        for req, res in zip(requests, out, strict=True):  # a request's n samples: one replica
            assert len(res.completions) == req.params.n
            assert len({c.text for c in res.completions}) == 1
        pids = Counter(pid_of(r) for r in out)
        assert len(pids) == 4 and min(pids.values()) >= 10, pids
        assert sum(pool.work_done) == sum(r.params.n for r in requests) and min(pool.work_done) > 0
        shared = [SampleRequest.chat([{"role": "system", "content": "S" * 300},  # one prefix for all:
                                      {"role": "user", "content": f"q{i}"}]) for i in range(64)]
        assert len({pid_of(r) for r in pool.sample(shared)}) >= 2, "idle replicas take from a busy one"
    finally:
        pool.close()


def test_same_prefix_lands_on_one_replica(local_ray) -> None:
    from engine.runtime.pool import affinity_key

    pool = make_pool(PidSampler, 2)
    try:
        prefixes: dict[int, list[str]] = {0: [], 1: []}
        i = 0
        while min(len(p) for p in prefixes.values()) < 2:  # two prefixes preferring each replica
            text = f"Few-shot preamble number {i}. " * 12
            key = affinity_key(SampleRequest.chat(text + "tail"))
            assert key is not None
            if len(prefixes[key % 2]) < 2:
                prefixes[key % 2].append(text)
            i += 1
        chosen = prefixes[0] + prefixes[1]
        requests = [SampleRequest.chat(chosen[k % 4] + f"tail {k}") for k in range(12)]  # interleaved
        out = pool.sample(requests)
        by_prefix: dict[str, set[str]] = {}
        for k, res in enumerate(out):
            by_prefix.setdefault(chosen[k % 4], set()).add(pid_of(res))
        assert all(len(p) == 1 for p in by_prefix.values()), by_prefix
        first, second = ({next(iter(by_prefix[p])) for p in prefixes[r]} for r in (0, 1))
        assert first != second, "each replica took its own prefixes"
    finally:
        pool.close()


def test_one_replica_equals_an_actor_proxy(local_ray) -> None:
    from engine.runtime.ray_services import ActorProxy

    opts = ScriptedOptions(responses=["a", "b", "c"])  # order=cycle: depends on the one batch
    requests = [SampleRequest.chat(f"q{i}", n=2, adapter="role-x" if i % 2 else None) for i in range(10)]
    proxy = ActorProxy.create(ScriptedSampler, opts, StageContext())
    one = make_pool(ScriptedSampler, 1, responses=["a", "b", "c"])
    try:
        assert one.sample(requests) == proxy.sample(requests)
        assert one.model_version_for("role-x") == proxy.model_version_for("role-x")
        assert one.model_version == proxy.model_version
    finally:
        proxy.close()
        one.close()
    hashed = {"order": "hash", "responses": ["a", "b", "c"]}
    pools = [make_pool(ScriptedSampler, n, **hashed) for n in (1, 3)]
    try:
        assert pools[0].sample(requests) == pools[1].sample(requests)
    finally:
        for p in pools:
            p.close()


def fake_adapter(path: Path, weights: bytes) -> Path:
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text('{"r": 8, "peft_type": "LORA"}')
    (path / "adapter_model.safetensors").write_bytes(weights)
    return path


def test_adapter_ships_through_the_object_store(local_ray, tmp_path: Path) -> None:
    adapter = fake_adapter(tmp_path / "adapters" / "iter1-policy", os.urandom(4096))
    same = tmp_path / "copy"
    shutil.copytree(adapter, same)
    digest = adapter_files_hash(adapter)
    pool = make_pool(AdapterProbe, 3)
    try:
        version = pool.model_version_for(str(adapter))
        first = pool.sample([SampleRequest.chat(f"q{i}", adapter=str(adapter)) for i in range(24)])
        assert pool.model_version_for(str(same)) == version and len(pool._by_hash) == 1, "once per hash"
        shutil.rmtree(adapter)  # the driver's copy is gone: every replica still serves it
        assert not adapter.exists()
        again = pool.sample([SampleRequest.chat(f"r{i}", adapter=str(adapter)) for i in range(24)])
        assert pool.model_version_for(str(adapter)) == version
        seen = [json.loads(r.completions[0].text) for r in first + again]
        assert {s["hash"] for s in seen} == {digest}
        paths = {s["pid"]: s["path"] for s in seen}
        assert len(paths) == 3, "every replica served the adapter"
        assert len(set(paths.values())) == 3 and str(adapter) not in paths.values()
        assert {json.loads(r.completions[0].text)["pid"] for r in again} == set(paths)
        assert {r.model_version for r in first + again} == {version}, "a copy is the same version"
        assert version.endswith(digest[:12])
        newer = fake_adapter(tmp_path / "adapters" / "iter2-policy", os.urandom(4096))
        out = pool.sample([SampleRequest.chat("q", adapter=str(newer))])
        assert json.loads(out[0].completions[0].text)["hash"] == adapter_files_hash(newer)
    finally:
        pool.close()


def funnel(run_dir: Path) -> set[tuple]:
    from engine.lineage import queries
    from engine.lineage.store import LineageStore

    store = LineageStore.for_run_dir(run_dir)
    try:
        run_id = json.loads((run_dir / "run.json").read_text())["run_id"]
        return {(r["iteration"], r["role"], r["n_in"], r["n_out"]) for r in queries.funnel(store, run_id)}
    finally:
        store.close()


def test_demo_loop_with_two_replicas_has_the_same_funnel(local_ray, finished_run) -> None:
    one, _ = finished_run("demo-scripted.yaml", ["runtime.ray=true", "sampler.replicas=1", "name=one"])
    two, _ = finished_run("demo-scripted.yaml", ["runtime.ray=true", "sampler.replicas=2", "name=two"])
    assert funnel(one) == funnel(two) and funnel(one)


def test_sandbox_pool_one_worker_per_node(monkeypatch: pytest.MonkeyPatch) -> None:
    import ray
    from ray.cluster_utils import Cluster

    from engine.runtime.pool import ReplicaPool
    from engine.runtime.ray_services import start_ray
    from plugins.sandbox_local import RlimitOptions, RlimitSandbox
    from sandbox.protocol import Job

    ray.shutdown()  # the module's local Ray
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "1")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    try:
        workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
        cluster.wait_for_nodes()
        start_ray(cluster.address, None, 0)
        pool = ReplicaPool.create(RlimitSandbox, RlimitOptions(concurrency=1), StageContext(), "auto",
                                  min_chunk=2)
        try:
            nodes = [node for _, node in ray.get([a.where.remote() for a in pool.actors])]
            assert sorted(nodes) == sorted(w.node_id for w in workers) == sorted(n for n in pool.pins if n)
            jobs = [Job(program=f"print({i})", tests=f"assert {i} % 5 != 4") for i in range(20)]
            results = pool.execute(jobs)
            assert [r.stdout.strip() for r in results] == [str(i) for i in range(20)]
            assert [r.status for r in results] == ["failed" if i % 5 == 4 else "passed" for i in range(20)]
            assert min(pool.work_done) > 0, pool.work_done
        finally:
            pool.close()
    finally:
        ray.shutdown()
        cluster.shutdown()
