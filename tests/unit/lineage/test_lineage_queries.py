"""Lineage queries (recursive CTEs, funnel, model versions, diffs), on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from engine.lineage import LineageStore, StoreError, UnknownRecord, UnknownRun, queries
from engine.records import EvalResult, Link, Record, Response

Graph = dict[str, Record]


def test_ancestors_walk_every_path_with_roles(store: LineageStore, graph: Graph) -> None:
    g = graph
    rows = queries.ancestors(store, g["ex"].id)
    assert {r["id"] for r in rows} == {g[k].id for k in ("pair", "ref", "bad", "crit", "task", "seed")}
    first = [(r["id"], r["role"], r["depth"], r["parent"]) for r in rows if r["depth"] <= 2]
    assert first == sorted(first, key=lambda x: (x[2], x[3], x[0], x[1]))
    assert set(first) == {(g["pair"].id, "input", 1, g["ex"].id), (g["ref"].id, "chosen", 2, g["pair"].id),
                          (g["bad"].id, "rejected", 2, g["pair"].id)}
    assert max(r["depth"] for r in rows) == 6  # ex <- pair <- ref <- crit <- bad <- task <- seed
    kinds = {r["id"]: r["kind"] for r in rows}
    assert kinds[g["crit"].id] == "critique" and kinds[g["seed"].id] == "seed"
    assert {(r["id"], r["role"]) for r in rows if r["parent"] == g["ref"].id} == {
        (g["bad"].id, "refines"), (g["crit"].id, "input")}
    assert len(queries.ancestors(store, g["ex"].id, max_depth=2)) == 3
    assert queries.ancestors(store, g["ex"].id, max_depth=0) == []
    assert queries.ancestors(store, g["seed"].id) == []


def test_descendants_of_a_seed(store: LineageStore, graph: Graph) -> None:
    g = graph
    rows = queries.descendants(store, g["seed"].id)
    assert {r["id"] for r in rows} == {g[k].id for k in ("task", "good", "bad", "crit", "ref", "pair", "ex")}
    assert (g["pair"].id, "rejected", g["bad"].id) in {(r["id"], r["role"], r["parent"]) for r in rows}
    assert {r["id"] for r in queries.descendants(store, g["seed"].id, max_depth=2)} == {
        g["task"].id, g["good"].id, g["bad"].id}


def test_unknown_ids_and_unstored_parents(store: LineageStore, graph: Graph,
                                          stage: Callable[..., str]) -> None:
    with pytest.raises(UnknownRecord, match="resp-nope"):
        queries.ancestors(store, "resp-nope")
    with pytest.raises(UnknownRecord):
        queries.descendants(store, "resp-nope")
    with pytest.raises(UnknownRun, match="r9"):
        queries.funnel(store, "r9")
    orphan = Response(text="o", parents=[Link(id="task-never-stored")])
    store.write_records("r1", 0, stage(store, "r1", 0, "orphans"), [orphan])
    (row,) = queries.ancestors(store, orphan.id)
    assert row["id"] == "task-never-stored" and row["kind"] is None


def test_funnel_per_stage_per_iteration(store: LineageStore, graph: Graph, stage: Callable[..., str]) -> None:
    rows = queries.funnel(store, "r1")
    got = [(r["iteration"], r["role"], r["n_in"], r["n_out"]) for r in rows]
    assert got == [(0, "seeds", 0, 1), (0, "tasks", 1, 1), (0, "actor", 1, 2), (0, "judge", 2, 1),
                   (0, "refiner", 2, 1), (0, "pairs", 2, 1), (0, "sft", 1, 1), (1, "seeds", 0, 1),
                   (1, "tasks", 1, 1)]
    assert rows[2]["stage"] == "actor-stage" and rows[2]["kind"] == "sampler"
    eid = stage(store, "r1", 1, "actor")  # unfinished: counts what it wrote so far
    store.write_records("r1", 1, eid, [Response(text="x", parents=[Link(id=graph["task"].id)])])
    assert queries.funnel(store, "r1")[-1]["n_out"] == 1


def test_model_version_behind_a_record(store: LineageStore, graph: Graph, stage: Callable[..., str]) -> None:
    store.add_model_version("m0", run_id="r1", base_model="smollm2", adapter_path=None, checkpoint_hash=None,
                            parent_version=None, execution_id=None)
    own = queries.model_version_of(store, graph["good"].id)
    assert own is not None and own["id"] == "m0" and own["source"] == "record"
    assert own["base_model"] == "smollm2"
    eid = stage(store, "r1", 0, "actor2", model_version="m1")
    plain = Response(text="made by m1", parents=[Link(id=graph["task"].id)])
    store.write_records("r1", 0, eid, [plain])
    assert queries.model_version_of(store, plain.id) == {"id": "m1", "source": "stage"}
    assert queries.model_version_of(store, graph["seed"].id) is None
    with pytest.raises(UnknownRecord):
        queries.model_version_of(store, "nope")


def test_records_of_kind_and_record_info(store: LineageStore, graph: Graph) -> None:
    got = queries.records_of_kind(store, "r1", 0, "response")
    assert [r["id"] for r in got] == [graph["good"].id, graph["bad"].id]
    assert got[0]["payload"]["text"] == "good"
    assert [r["id"] for r in queries.records_of_kind(store, "r1", 1, "seed")] == [graph["seed"].id]
    assert queries.records_of_kind(store, "r1", 1, "response") == []
    info = queries.record_info(store, graph["seed"].id)
    assert info["iteration"] == 0 and info["role"] == "seeds" and info["stage"] == "seeds-stage"


def test_diff_iterations(store: LineageStore, graph: Graph) -> None:
    store.add_metrics("r1", 0, "m0", [EvalResult(evaluator="ifeval", metric="acc", value=0.5)])
    store.add_metrics("r1", 1, "m1", [EvalResult(evaluator="ifeval", metric="acc", value=0.75),
                                      EvalResult(evaluator="ifeval", metric="loose", value=0.8)])
    diff = queries.diff_iterations(store, "r1", 0, 1)
    fun = {r["role"]: r for r in diff["funnel"]}
    assert fun["seeds"]["delta_out"] == 0 and fun["actor"]["n_out_b"] is None and fun["actor"]["n_out_a"] == 2
    met = {r["metric"]: r for r in diff["metrics"]}
    assert met["acc"]["delta"] == pytest.approx(0.25) and met["loose"]["value_a"] is None
    with pytest.raises(StoreError):
        queries.diff_iterations(store, "r1", 1, 1)
