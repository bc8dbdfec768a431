"""Trainers on GPUs that the sampler replicas hold: the replicas lend theirs while training runs.

Ray counts logical GPUs, so a CPU machine can test placement: a ``ray.cluster_utils.Cluster`` of a
head with no CPUs and two worker nodes of 2 CPUs and 1 GPU each. A scripted sampler declaring
half a CPU and a GPU, with ``replicas: auto``, gets 2 replicas, one per node, holding both GPUs.
A trainer asking for a GPU per worker (``gpu-probe``: writes a tiny adapter and reports, from
inside its Ray task, the GPU ids Ray gave it and the GPUs left free) could then never be placed;
the run lends it one replica's GPU instead: the pool has 1 live replica while it trains and 2
afterwards (a fresh one where the lent one was), and the new adapter is served by both. A
training that even every replica could not make room for fails as before, lending nothing. A whole
SELF run on this cluster trains twice on a GPU and samples its second iteration with the first
iteration's adapter, through the replicas that came back.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel, ConfigDict

from engine import hookimpl
from engine.config import ResolvedStage, load_config
from engine.contracts import Resources, Stage, StageContext, validate_options
from engine.errors import UserError
from engine.manager import create_plugin_manager
from engine.records import Record, TrainingExample
from engine.sampling.protocol import SampleRequest
from engine.training.protocol import ModelVersion, adapter_files_hash, base_version
from plugins.sampler_scripted import ScriptedOptions, ScriptedSampler

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "demo-scripted.yaml"
NODES = 2
LENT = "training needs {'CPU': 1.0, 'GPU': 1.0} x 1: lending 1 of 2 sampler replicas until it ends"


class GpuSampler(ScriptedSampler):
    """The scripted sampler holding a (logical) GPU per replica."""

    name = "gpu-scripted"
    resources: ClassVar[Resources] = Resources(num_cpus=0.5, num_gpus=1.0)


class ProbeOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    num_gpus: float = 1.0
    num_workers: int = 1


class GpuProbeTrainer(Stage[ProbeOptions]):
    """Writes an adapter named by what it trained on; its one step records ``gpus`` (the GPU ids Ray
    gave this task) and ``free_gpus`` (the cluster's free GPUs meanwhile)."""

    kind = "trainer"
    name = "gpu-probe"

    @classmethod
    def resources_for(cls, options: BaseModel | None) -> Resources:
        return Resources(num_cpus=1.0, num_gpus=getattr(options, "num_gpus", 1.0))

    def train(self, examples: Sequence[Record], base: ModelVersion, out_dir: str) -> ModelVersion:
        import ray

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        made = hashlib.sha256(f"{base.id}|{[e.id for e in examples]}".encode()).hexdigest()
        (out / "adapter_config.json").write_text(json.dumps({"made": made}))
        (out / "adapter_model.bin").write_bytes(made.encode())
        step = {"step": 1.0, "loss": 0.0, "gpus": float(len(ray.get_gpu_ids())),
                "free_gpus": float(ray.available_resources().get("GPU", 0.0))}
        return ModelVersion(base_model=base.base_model, adapter_path=str(out),
                            checkpoint_hash=adapter_files_hash(out), parent=base.id, steps=[step])


@hookimpl
def register_samplers() -> list[type]:
    return [GpuSampler]


@hookimpl
def register_trainers() -> list[type]:
    return [GpuProbeTrainer]


@pytest.fixture(scope="module")
def cluster(make_cluster: Any) -> Iterator[Any]:
    nodes = [{"num_cpus": 2, "num_gpus": 1}] * NODES
    with make_cluster({"num_cpus": 0, "num_gpus": 0}, nodes, sys.modules[__name__]) as made:
        yield made


def plugin_manager() -> Any:
    return create_plugin_manager(entry_points=False, plugins=[sys.modules[__name__]])


def probe(**options: Any) -> ResolvedStage:
    info = plugin_manager().stage("trainer", "gpu-probe")
    return ResolvedStage("trainer", info, validate_options(info.cls, options))


def where(pool: Any) -> list[tuple[int, str]]:
    import ray

    return list(ray.get([a.where.remote() for a in pool.actors], timeout=60))


@pytest.fixture
def gpu_pool(cluster: Any) -> Iterator[Any]:
    from engine.runtime.lending import placeable_now
    from engine.runtime.pool import ReplicaPool

    pool = ReplicaPool.create(GpuSampler, ScriptedOptions(), StageContext(), "auto", min_chunk=1)
    try:
        assert len({node for _, node in where(pool)}) == NODES, "one replica per node"
        assert not placeable_now([{"GPU": 1.0}]), "the replicas hold every GPU"
        yield pool
    finally:
        pool.close()


def test_a_training_borrows_a_replicas_gpu_and_the_pool_comes_back(
        gpu_pool: Any, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    from engine.runtime.lending import lend
    from engine.runtime.training import run_training

    pool = gpu_pool
    before = where(pool)
    seen: list[tuple[bool, int]] = []

    @contextmanager
    def make_room(bundles: list[dict[str, float]]) -> Iterator[bool]:
        with lend([("sampler", pool)], bundles) as lent:
            seen.append((lent, len(pool.actors)))  # the pool while the training runs
            yield lent

    examples: list[Record] = [TrainingExample(prompt=f"question {i}", completion=f"{i}") for i in range(3)]
    new = run_training(probe(), StageContext(model_name="m"), examples, base_version("m"),
                       str(tmp_path / "adapter"), True, make_room)
    [step] = new.steps
    assert step["gpus"] == 1.0, "the training task held a GPU"
    assert step["free_gpus"] == 0.0, "the one lent replica's GPU, no more"
    assert seen == [(True, 1)], "one of the 2 replicas was lent during the training"
    assert LENT in capfd.readouterr().err

    after = where(pool)
    assert len(pool.actors) == len(pool.pins) == len(pool.work_done) == NODES, "back to its size"
    assert len({node for _, node in after}) == NODES
    kept = [w for w in after if w in before]
    assert len(kept) == 1 and after[0] == before[0], "replica 0 stayed; the last one was lent"
    assert after[1][0] != before[1][0], "a fresh replica in the lent one's place"

    adapter = new.adapter_path
    assert adapter and adapter_files_hash(adapter) == new.checkpoint_hash
    version = pool.model_version_for(adapter)
    assert version == ScriptedSampler(ScriptedOptions()).model_version_for(adapter)
    results = pool.sample([SampleRequest.chat(f"question {i}", adapter=adapter) for i in range(16)])
    assert {r.model_version for r in results} == {version}
    assert min(pool.work_done) > 0, "the fresh replica served the new adapter too"


def test_a_training_that_lending_cannot_place_fails_and_lends_nothing(
        gpu_pool: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capfd: pytest.CaptureFixture[str]) -> None:
    from engine.runtime import training
    from engine.runtime.lending import lend

    pool = gpu_pool
    before = where(pool)
    monkeypatch.setattr(training, "PLACEMENT_TIMEOUT_S", 1.0)

    def make_room(bundles: list[dict[str, float]]) -> Any:
        return lend([("sampler", pool)], bundles)

    with pytest.raises(UserError, match=r"trainer 'gpu-probe' needs \{'CPU': 1.0, 'GPU': 2.0\} x 1 worker"):
        training.run_training(probe(num_gpus=2), StageContext(model_name="m"), [], base_version("m"),
                              str(tmp_path / "adapter"), True, make_room)  # 2 GPUs: no node has them
    assert "lending" not in capfd.readouterr().err
    assert where(pool) == before, "no replica was stopped"


def test_a_run_trains_on_gpus_its_sampler_replicas_lend(cluster: Any, tmp_path: Path,
                                                        capfd: pytest.CaptureFixture[str]) -> None:
    from engine.lineage import queries
    from engine.lineage.store import LineageStore
    from engine.runtime.run import start_run

    pm = plugin_manager()
    overrides = [f"output_dir={tmp_path}", "iterations=2", "data.limit=12",  # both iterations train
                 f"runtime.address={cluster.address}", "sampler.name=gpu-scripted", "sampler.replicas=auto",
                 "trainer.name=gpu-probe"]
    run_dir = start_run(load_config(CONFIG, overrides, pm), pm)
    state = json.loads((run_dir / "run.json").read_text())
    assert state["status"] == "finished"
    assert capfd.readouterr().err.count(LENT) == 2, "each iteration's training borrowed a GPU"

    first = run_dir / "adapters" / "iter1-policy"
    served = ScriptedSampler(ScriptedOptions(**yaml_sampler_options())).model_version_for(str(first))
    store = LineageStore.for_run_dir(run_dir)
    try:
        steps = store.training_steps(state["run_id"])
        gpus = sorted((s["iteration"], s["value"]) for s in steps if s["metric"] == "gpus")
        assert gpus == [(1, 1.0), (2, 1.0)], "both trainings held a GPU"
        responses = queries.records_of_kind(store, state["run_id"], 2, "response")
        assert responses and {r["model_version"] for r in responses} == {served}  # iteration 1's adapter
    finally:
        store.close()


def yaml_sampler_options() -> dict[str, Any]:
    import yaml

    options: dict[str, Any] = yaml.safe_load(CONFIG.read_text())["sampler"]["options"]
    return options
