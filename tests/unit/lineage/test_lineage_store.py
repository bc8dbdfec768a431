"""The store's write API and resume look-ups, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Literal

import pytest
from sqlalchemy import func, select

from engine.lineage import LineageStore, StoreError, UnknownRecord, execution_id_of
from engine.lineage import schema as t
from engine.records import EvalResult, Link, Record, Response, Seed, Task

Stage = Callable[..., str]


def count(store: LineageStore, table: Any) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_runs_and_stages_are_idempotent(store: LineageStore, stage: Stage) -> None:
    for _ in range(2):
        store.create_run("r1", config={"a": 1}, config_hash="h", code_version="v1", loop="spar", name="first")
        eid = stage(store, "r1", 0, "actor")
    assert eid == execution_id_of("r1", 0, "actor") and eid.startswith("exec-")
    assert stage(store, "r1", 0, "actor", attempt_key="retry") != eid
    assert count(store, t.runs) == 1 and count(store, t.iterations) == 1
    assert count(store, t.stage_executions) == 2
    info = store.stage_execution(eid)
    assert info is not None and not info["finished"] and info["n_out"] is None
    store.finish_stage(eid, n_in=3, n_out=5, seconds=1.5)
    info = store.stage_execution(eid)
    assert info is not None and info["finished"] and (info["n_in"], info["n_out"]) == (3, 5)
    store.finish_iteration("r1", 0)
    store.set_run_status("r1", "finished", ended=True)
    (run,) = store.runs()
    assert (run["id"], run["status"], run["config"], run["name"]) == ("r1", "finished", {"a": 1}, "first")
    assert run["ended_at"] is not None
    assert store.stage_execution("exec-nope") is None


def test_failed_stage_and_unknown_execution(store: LineageStore, stage: Stage) -> None:
    store.create_run("r1", config={}, config_hash="h", code_version="v", loop="l")
    eid = stage(store, "r1", 0, "judge")
    store.finish_stage(eid, n_in=3, n_out=0, seconds=0.1, error="boom")
    info = store.stage_execution(eid)
    assert info is not None and info["error"] == "boom" and not info["finished"]
    with pytest.raises(StoreError, match="exec-missing"):
        store.finish_stage("exec-missing", n_in=0, n_out=0, seconds=0)


def test_write_records_is_idempotent_and_ordered(store: LineageStore, stage: Stage) -> None:
    store.create_run("r1", config={}, config_hash="h", code_version="v", loop="l")
    eid = stage(store, "r1", 0, "actor")
    task = Task(prompt="p")
    resps = [Response(text=f"r{i}", parents=[Link(id=task.id)], sample_index=i) for i in range(50)]
    assert store.write_records("r1", 0, eid, [task, *resps[:30]]) == 31
    assert store.write_records("r1", 0, eid, [task, *resps]) == 20  # resumed: only the new ones
    assert store.write_records("r1", 0, eid, resps) == 0
    assert store.write_records("r1", 0, eid, []) == 0
    assert count(store, t.records) == 51 and count(store, t.edges) == 50 and count(store, t.outputs) == 51
    assert store.has_records(eid) and not store.has_records("exec-other")
    assert store.records_of(eid) == [task, *resps]
    fresh = LineageStore.open(store.url)  # a resumed runner: a new process sees the same order
    try:
        assert fresh.records_of(eid) == [task, *resps]
        assert fresh.write_records("r1", 0, eid, [Response(text="late", parents=[Link(id=task.id)])]) == 1
        assert fresh.records_of(eid)[-1].text == "late"  # type: ignore[attr-defined]
    finally:
        fresh.close()


def test_same_record_from_two_executions_is_stored_once(store: LineageStore, stage: Stage) -> None:
    store.create_run("r1", config={}, config_hash="h", code_version="v", loop="l")
    seed = Seed(text="s")
    e0, e1 = stage(store, "r1", 0, "seeds"), stage(store, "r1", 1, "seeds")
    store.write_records("r1", 0, e0, [seed])
    assert store.write_records("r1", 1, e1, [seed]) == 1
    assert count(store, t.records) == 1
    assert store.records_of(e1) == [seed]


def test_get_record_round_trips_types_parents_and_meta(store: LineageStore, stage: Stage) -> None:
    store.create_run("r1", config={}, config_hash="h", code_version="v", loop="l")
    eid = stage(store, "r1", 0, "actor")
    resp = Response(text="hi", parents=[Link(id="task-b", role="input"), Link(id="task-a", role="tests")],
                    model_version="m1", meta={"latency": 0.25, "tags": ["x"]}, finish_reason="stop")
    store.write_records("r1", 0, eid, [resp])
    got = store.get_record(resp.id)
    assert isinstance(got, Response) and got == resp
    assert got.identity() == resp.identity()
    with pytest.raises(UnknownRecord, match="resp-nope"):
        store.get_record("resp-nope")


class Verdict(Record):
    kind: Literal["verdict"] = "verdict"
    score: int


def test_plugin_kinds_load_typed_and_unknown_kinds_load_plain(store_url: str, stage: Stage) -> None:
    from engine.records import BUILTIN_KINDS

    with LineageStore.open(store_url, kinds={**BUILTIN_KINDS, "verdict": Verdict}) as store:
        store.create_run("r1", config={}, config_hash="h", code_version="v", loop="l")
        eid = stage(store, "r1", 0, "judge")
        v = Verdict(score=3)
        store.write_records("r1", 0, eid, [v])
        assert store.get_record(v.id) == v
    with LineageStore.open(store_url) as plain:
        got = plain.get_record(v.id)
        assert type(got) is Record and got.meta["payload"]["score"] == 3


def test_model_versions_and_metrics(store: LineageStore, stage: Stage,
                                    graph: dict[str, Record]) -> None:
    eid = stage(store, "r1", 0, "trainer", kind="trainer")
    for _ in range(2):
        store.add_model_version("m1", run_id="r1", base_model="smollm2", adapter_path="/a/m1",
                                checkpoint_hash="c" * 64, parent_version="m0", execution_id=eid,
                                trained_on=[graph["ex"].id, graph["ex"].id])
    mv = store.get_model_version("m1")
    assert mv is not None and mv["parent_version"] == "m0" and mv["n_trained_on"] == 1
    assert store.trained_on("m1") == [graph["ex"].id]
    assert store.get_model_version("m9") is None
    store.add_metrics("r1", 0, "m1", [EvalResult(evaluator="ifeval", metric="acc", value=0.5, n=10)])
    store.add_metrics("r1", 0, "m1", [EvalResult(evaluator="ifeval", metric="acc", value=0.5, n=10)])
    store.add_metrics("r1", 1, "m1", [EvalResult(evaluator="ifeval", metric="acc", value=0.75, n=10)])
    store.add_metrics("r1", 1, None, [])
    assert count(store, t.metrics) == 2
    from engine.lineage import queries

    assert [(m["iteration"], m["value"]) for m in queries.metrics(store, "r1")] == [(0, 0.5), (1, 0.75)]


def test_stored_content_hash_is_content_hash_of_identity(store: LineageStore, stage: Stage) -> None:
    from engine.lineage.rows import canonical
    from engine.records import canonical_json, content_hash

    store.create_run("r1", config={}, config_hash="h", code_version="v", loop="l")
    resp = Response(text="é \"quoted\"\n", parents=[Link(id="t", role="input")], meta={"x": 1.5e-7})
    store.write_records("r1", 0, stage(store, "r1", 0, "actor"), [resp])
    with store.engine.connect() as conn:
        stored = conn.execute(select(t.records.c.content_hash)).scalar_one()
    assert stored == content_hash(resp.identity())
    for data in (resp.identity(), {"b": [1.5, None, True, {"z": float("inf")}], "a": "é"}):
        assert canonical(data) == canonical_json(data)



def test_row_dump_equals_pydantic_dumps_for_every_kind() -> None:
    """rows.dump calls pydantic's serializer directly: payload text and content hash must equal
    model_dump_json / content_hash(identity()) for every kind, and for a kind that overrides them."""
    from engine.lineage.rows import PAYLOAD_EXCLUDES, dump
    from engine.records import BUILTIN_KINDS, Critique, Execution, Trajectory, Turn, content_hash

    class Custom(Record):
        kind: Literal["custom"] = "custom"
        x: float = 0.0
        _identity_excludes: ClassVar[set[str]] = {"id", "meta", "x"}

        def identity(self) -> dict[str, Any]:
            return {"only": self.kind}

        def payload(self) -> dict[str, Any]:
            return {"x": self.x, "p": Path("/p")}

    link = [Link(id="t", role="input"), Link(id="u", role="judges")]
    made = [Task(prompt="é \"q\"\n\x00", messages=[{"role": "user", "content": "ü"}], constraints=["c"]),
            Response(text="r", parents=link, model_version="m", meta={"t": 1.5e-7}),
            Critique(verdict=None, sample_verdicts=[True, None], vote_share=float("inf"), parents=link),
            Execution(status="passed", duration_s=2.5, failed_tests=["a"]),
            EvalResult(evaluator="e", metric="m", value=float("nan"), details={"b": 2, "a": [0.1, None]}),
            Trajectory(messages=[{"role": "a", "content": "b"}], rewards={"z": 1.0, "a": [0.5, -0.0]},
                       token_ids=[[1, 2**70]]),
            Turn(index=0, action="a", logprobs=[-1e-320, 1e300]), Custom(x=3.0)]
    made += [cls.model_validate({"kind": kind, **{f: "x" for f, info in cls.model_fields.items()
                                                   if info.is_required() and f != "kind"}})
             for kind, cls in BUILTIN_KINDS.items() if kind not in {r.kind for r in made}
             and kind not in ("critique", "execution", "eval_result", "turn", "trajectory")]
    assert {r.kind for r in made} >= set(BUILTIN_KINDS)
    for rec in made:
        payload = (rec.model_dump_json(exclude=set(PAYLOAD_EXCLUDES)) if type(rec).payload is Record.payload
                   else json.dumps(rec.payload(), ensure_ascii=False, default=str))
        assert dump(rec) == (payload, content_hash(rec.identity())), rec.kind

def test_chunks_are_written_whole_and_read_back_in_order(store: LineageStore, stage: Stage) -> None:
    from engine.lineage.chunks import inputs_hash

    store.create_run("r1", config={}, config_hash="h", code_version="v1", loop="spar")
    eid = stage(store, "r1", 1, "actor")
    tasks = [Task(prompt=f"t{i}") for i in range(4)]
    answers = [Response(text=f"a{i}", prompt=t.prompt, parents=[Link(id=t.id)]) for i, t in enumerate(tasks)]
    note = Seed(text="side")
    store.write_chunk("r1", 1, eid, 0, inputs_hash=inputs_hash([tasks[:2]]), outputs=answers[:2], side=[note],
                      n_in=2, seconds=0.5)
    # chunk 1 repeats a record of chunk 0: the execution stores it once, each chunk reads it back
    store.write_chunk("r1", 1, eid, 1, inputs_hash=inputs_hash([tasks[2:]]),
                      outputs=[answers[1], *answers[2:]], side=[], n_in=2, seconds=0.25)
    assert store.chunk_of(eid, 2) is None, "a chunk never written is in flight"
    first, second = store.chunks_of(eid)
    assert (first["chunk"], first["n_out"], first["n_side"], second["chunk"]) == (0, 2, 1, 1)
    assert first["inputs_hash"] == inputs_hash([tasks[:2]]) != second["inputs_hash"]
    out, side = store.chunk_records(first)
    assert [r.id for r in out] == [a.id for a in answers[:2]] and [r.id for r in side] == [note.id]
    assert out[0].parents == answers[0].parents, "parents come back with the record"
    out, side = store.chunk_records(second)
    assert [r.id for r in out] == [a.id for a in answers[1:]] and side == []
    # writing a chunk again (its inputs changed) replaces its row
    store.write_chunk("r1", 1, eid, 1, inputs_hash="other", outputs=answers[3:], side=[], n_in=1, seconds=0.1)
    row = store.chunk_of(eid, 1)
    assert row is not None and (row["inputs_hash"], row["n_in"]) == ("other", 1)
    assert [r.id for r in store.chunk_records(row)[0]] == [answers[3].id]
    assert count(store, t.records) == 5
