"""Every lineage query, in SQL: ancestors and descendants (recursive CTEs over ``edges``), the
funnel, the model version behind a record, records of a kind, metrics and iteration diffs.

What it is: functions taking a :class:`LineageStore`, an Engine or a Connection and returning
plain rows (dicts). Graph walks run in the database as one recursive query, never as Python loops
over rows. What it is not: writes (store.py) or formatting (engine/cli/lineage.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, Select, bindparam, func, literal, select

from engine.lineage import schema as t
from engine.lineage.errors import StoreError, UnknownRecord, UnknownRun

if TYPE_CHECKING:
    from engine.lineage.store import LineageStore

Source = "LineageStore | Engine | Connection"
Row = dict[str, Any]


@contextmanager
def connection(src: LineageStore | Engine | Connection) -> Iterator[Connection]:
    if isinstance(src, Connection):
        yield src
        return
    engine = src if isinstance(src, Engine) else src.engine
    with engine.connect() as conn:
        yield conn


def _require_record(conn: Connection, record_id: str) -> None:
    r = t.records.c
    if conn.execute(select(r.id).where(r.id == record_id)).first() is None:
        raise UnknownRecord(record_id)


@lru_cache(maxsize=4)
def _walk_query(up: bool, limited: bool) -> Select[Any]:
    """The recursive CTE of a walk, built once; binds ``rid`` (and ``max_depth`` when limited)."""
    e = t.edges.c
    near, far = (e.child_id, e.parent_id) if up else (e.parent_id, e.child_id)
    base = select(far.label("id"), e.role.label("role"), near.label("parent"), literal(1).label("depth"))
    cte = base.where(near == bindparam("rid")).cte("walk", recursive=True)
    step = (select(far, e.role, near, cte.c.depth + 1)
            .select_from(t.edges.join(cte, near == cte.c.id)))
    if limited:
        step = step.where(cte.c.depth < bindparam("max_depth"))
    cte = cte.union(step)
    r = t.records.c
    return (select(cte.c.id, r.kind, cte.c.depth, cte.c.role, cte.c.parent)
            .select_from(cte.outerjoin(t.records, r.id == cte.c.id))
            .order_by(cte.c.depth, cte.c.parent, cte.c.id, cte.c.role))


def _walk(src: LineageStore | Engine | Connection, record_id: str, max_depth: int | None,
          up: bool) -> list[Row]:
    params: dict[str, Any] = {"rid": record_id}
    if max_depth is not None:
        params["max_depth"] = max_depth
    with connection(src) as conn:
        rows = [] if max_depth is not None and max_depth < 1 else [
            dict(row._mapping) for row in conn.execute(_walk_query(up, max_depth is not None), params)]
        if not rows:  # no edges: tell a root record from an unknown id
            _require_record(conn, record_id)
        return rows


def ancestors(src: LineageStore | Engine | Connection, record_id: str,
              max_depth: int | None = None) -> list[Row]:
    """Where a record came from: rows (id, kind, depth, role, parent), one per edge walked.

    ``depth`` 1 is a direct parent; ``role`` is the edge's role; ``parent`` is the record the
    row hangs from in the tree, i.e. the child one step closer to ``record_id``. ``kind`` is None
    for a parent that was never stored."""
    return _walk(src, record_id, max_depth, up=True)


def descendants(src: LineageStore | Engine | Connection, record_id: str,
                max_depth: int | None = None) -> list[Row]:
    """What a record produced: rows (id, kind, depth, role, parent), ``parent`` being the record
    one step closer to ``record_id``."""
    return _walk(src, record_id, max_depth, up=False)


def record_info(src: LineageStore | Engine | Connection, record_id: str) -> Row:
    """One record's row with the stage that first wrote it: (id, kind, run_id, iteration,
    execution_id, role, stage, plugin, model_version, content_hash, payload)."""
    r, s = t.records.c, t.stage_executions.c
    query = (select(r.id, r.kind, r.run_id, r.iteration, r.execution_id, s.role, s.stage, s.plugin,
                    r.model_version, r.content_hash, r.payload)
             .select_from(t.records.outerjoin(t.stage_executions, s.id == r.execution_id))
             .where(r.id == record_id))
    with connection(src) as conn:
        row = conn.execute(query).first()
    if row is None:
        raise UnknownRecord(record_id)
    return dict(row._mapping)


def require_run(conn: Connection, run_id: str) -> None:
    if conn.execute(select(t.runs.c.id).where(t.runs.c.id == run_id)).first() is None:
        raise UnknownRun(f"unknown run id {run_id!r}")


def funnel(src: LineageStore | Engine | Connection, run_id: str) -> list[Row]:
    """Records in and out per stage per iteration: rows (iteration, role, stage, kind, n_in,
    n_out, executions, seconds), summed over the attempts of a role. An unfinished execution
    counts the outputs written so far."""
    s, o = t.stage_executions.c, t.outputs.c
    written = (select(func.count()).select_from(t.outputs).where(o.execution_id == s.id)
               .correlate(t.stage_executions).scalar_subquery())
    query = (select(s.iteration, s.role, s.stage, s.kind,
                    func.sum(func.coalesce(s.n_in, 0)).label("n_in"),
                    func.sum(func.coalesce(s.n_out, written)).label("n_out"),
                    func.count().label("executions"), func.sum(s.seconds).label("seconds"))
             .where(s.run_id == run_id)
             .group_by(s.iteration, s.role, s.stage, s.kind)
             .order_by(s.iteration, func.min(s.started_at), s.role))
    with connection(src) as conn:
        require_run(conn, run_id)
        rows = [dict(r._mapping) for r in conn.execute(query)]
    for row in rows:
        row["n_in"], row["n_out"] = int(row["n_in"] or 0), int(row["n_out"] or 0)
    return rows


def model_version_of(src: LineageStore | Engine | Connection, record_id: str) -> Row | None:
    """The model version behind a record: its own ``model_version``, else that of the stage
    execution that first wrote it; with the version's details when it is registered."""
    r, s, m = t.records.c, t.stage_executions.c, t.model_versions
    query = (select(r.model_version.label("own"), s.model_version.label("stage"))
             .select_from(t.records.outerjoin(t.stage_executions, s.id == r.execution_id))
             .where(r.id == record_id))
    with connection(src) as conn:
        row = conn.execute(query).first()
        if row is None:
            raise UnknownRecord(record_id)
        version = row.own or row.stage
        if version is None:
            return None
        details = conn.execute(select(m).where(m.c.id == version)).first()
    found: Row = dict(details._mapping) if details is not None else {"id": version}
    found["source"] = "record" if row.own else "stage"
    return found


def records_of_kind(src: LineageStore | Engine | Connection, run_id: str, iteration: int,
                    kind: str) -> list[Row]:
    """Records of ``kind`` emitted in an iteration (each once): rows (id, kind, model_version,
    execution_id, content_hash, payload), in write order."""
    o, r, s = t.outputs.c, t.records.c, t.stage_executions.c
    first = (select(o.record_id, func.min(o.seq).label("seq"))
             .select_from(t.stage_executions.join(t.outputs, o.execution_id == s.id))
             .where(s.run_id == run_id, s.iteration == iteration, o.kind == kind)
             .group_by(o.record_id).subquery())
    query = (select(r.id, r.kind, r.model_version, r.execution_id, r.content_hash, r.payload)
             .select_from(first.join(t.records, r.id == first.c.record_id))
             .order_by(first.c.seq, r.id))
    with connection(src) as conn:
        require_run(conn, run_id)
        return [dict(row._mapping) for row in conn.execute(query)]


def parents_of(src: LineageStore | Engine | Connection, record_ids: list[str]) -> dict[str, list[Row]]:
    """Parent links (id, role) of each record, in the order of the record's ``parents``."""
    e = t.edges.c
    found: dict[str, list[Row]] = {rid: [] for rid in record_ids}
    with connection(src) as conn:
        for i in range(0, len(record_ids), 500):
            chunk = record_ids[i:i + 500]
            query = (select(e.child_id, e.parent_id, e.role).where(e.child_id.in_(chunk))
                     .order_by(e.child_id, e.pos))
            for row in conn.execute(query):
                found[row.child_id].append({"id": row.parent_id, "role": row.role})
    return found


def metrics(src: LineageStore | Engine | Connection, run_id: str) -> list[Row]:
    """Evaluation results of a run: rows (iteration, model_version, evaluator, metric, value, n)."""
    m = t.metrics.c
    query = (select(m.iteration, m.model_version, m.evaluator, m.metric, m.value, m.n)
             .where(m.run_id == run_id).order_by(m.iteration, m.evaluator, m.metric, m.model_key))
    with connection(src) as conn:
        require_run(conn, run_id)
        return [dict(r._mapping) for r in conn.execute(query)]


def metric_details(src: LineageStore | Engine | Connection, run_id: str) -> list[Row]:
    """What evaluators kept beside their values: rows (iteration, evaluator, metric, details)."""
    m = t.metrics.c
    query = (select(m.iteration, m.evaluator, m.metric, m.details)
             .where(m.run_id == run_id).order_by(m.iteration, m.evaluator, m.metric, m.model_key))
    with connection(src) as conn:
        require_run(conn, run_id)
        return [dict(r._mapping) for r in conn.execute(query)]


def metric_rows(src: LineageStore | Engine | Connection, run_id: str, iteration: int) -> list[Row]:
    """Every column of one iteration's evaluation results: rows (evaluator, metric, model_version,
    value, n, details, record_id); what a later iteration on the same model version reuses."""
    m = t.metrics.c
    query = (select(m.evaluator, m.metric, m.model_version, m.value, m.n, m.details, m.record_id)
             .where(m.run_id == run_id, m.iteration == iteration)
             .order_by(m.evaluator, m.metric, m.model_key))
    with connection(src) as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def diff_iterations(src: LineageStore | Engine | Connection, run_id: str, a: int, b: int) -> Row:
    """Funnel and metric differences between iterations ``a`` and ``b`` of a run:
    ``{"funnel": [(role, stage, n_in/n_out in a and b, delta_out)], "metrics": [(evaluator,
    metric, value in a and b, delta)]}``; a side missing in one iteration is None."""
    if a == b:
        raise StoreError(f"diff needs two different iterations (got {a} twice)")
    with connection(src) as conn:
        steps = [row for row in funnel(conn, run_id) if row["iteration"] in (a, b)]
        scores = [row for row in metrics(conn, run_id) if row["iteration"] in (a, b)]
    fun: dict[tuple[str, str], Row] = {}
    for row in steps:
        side = "a" if row["iteration"] == a else "b"
        entry = fun.setdefault((row["role"], row["stage"]), {"role": row["role"], "stage": row["stage"],
                                                              "n_in_a": None, "n_out_a": None,
                                                              "n_in_b": None, "n_out_b": None})
        entry[f"n_in_{side}"], entry[f"n_out_{side}"] = row["n_in"], row["n_out"]
    met: dict[tuple[str, str], Row] = {}
    for row in scores:
        side = "a" if row["iteration"] == a else "b"
        entry = met.setdefault((row["evaluator"], row["metric"]), {"evaluator": row["evaluator"],
                                                                    "metric": row["metric"],
                                                                    "value_a": None, "value_b": None})
        entry[f"value_{side}"] = row["value"]
    for entry in fun.values():
        entry["delta_out"] = _delta(entry["n_out_a"], entry["n_out_b"])
    for entry in met.values():
        entry["delta"] = _delta(entry["value_a"], entry["value_b"])
    return {"run_id": run_id, "a": a, "b": b, "funnel": list(fun.values()), "metrics": list(met.values())}


def _delta(x: float | None, y: float | None) -> float | None:
    return None if x is None or y is None else y - x
