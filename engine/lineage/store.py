"""The lineage store: the runner's write API and the record look-ups it needs to resume.

What it is: :class:`LineageStore`, which opens (and migrates) a SQLite file or a PostgreSQL
database and records runs, iterations, stage executions, records with their parent edges,
model versions with their training data, metrics and training steps. Writes are bulk and
idempotent (ON CONFLICT DO NOTHING), so a resumed or concurrent writer never duplicates a
row. What it is not: the analytic queries (queries.py), export (export.py) or the CLI.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Table, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from engine.lineage import schema as t
from engine.lineage.bulk import insert_rows
from engine.lineage.chunks import StageChunks
from engine.lineage.connect import (
    CACHE_KIB,
    STORE_FILE,
    describe_error,
    make_engine,
    parse_url,
    safe_url,
    sqlite_path,
)
from engine.lineage.errors import StoreError, StoreNotFound, UnknownRecord
from engine.lineage.migrate import ensure_schema, needs_upgrade
from engine.lineage.rows import RecordRows, load_records
from engine.records import EvalResult, Record


def execution_id_of(run_id: str, iteration: int, role: str, attempt_key: str = "") -> str:
    """The deterministic id of a stage execution, so a resumed run finds its earlier outputs."""
    key = "\x1f".join((run_id, str(iteration), role, attempt_key))
    return "exec-" + hashlib.sha256(key.encode()).hexdigest()[:24]


def _probe(url: str, where: str, create: bool) -> None:
    """Check an existing SQLite file through a read-only connection (raises a StoreError)."""
    engine = make_engine(url, read_only=True)
    try:
        needs_upgrade(engine, where=where, create=create)
    except SQLAlchemyError as exc:
        raise describe_error(exc, url) from None
    finally:
        engine.dispose()


def _now() -> datetime:
    return datetime.now(UTC)


class LineageStore(StageChunks):
    """A lineage database. Open with :meth:`open` or :meth:`for_run_dir`; close when done."""

    def __init__(self, engine: Engine, url: str, kinds: dict[str, type[Record]] | None = None) -> None:
        self.engine = engine
        self.url = url
        self.kinds = kinds
        self.dialect = engine.dialect.name
        self._next_seq: dict[str, int] = {}
        self._lock = threading.RLock()
        self._writer: Connection | None = None

    # ---------------------------------------------------------------- opening
    @classmethod
    def open(cls, url: str, *, create: bool = True,
             kinds: dict[str, type[Record]] | None = None) -> LineageStore:
        """Open the store at ``url`` and migrate it; ``create=False`` refuses a missing store."""
        where = safe_url(parse_url(url))
        path = sqlite_path(parse_url(url)) if parse_url(url).get_backend_name() == "sqlite" else None
        if path is not None and path.is_file():
            _probe(url, where, create)  # read-only first: a file that is no store stays untouched
        engine = make_engine(url, must_exist=not create)
        try:
            ensure_schema(engine, where=where, create=create)
        except SQLAlchemyError as exc:
            engine.dispose()
            raise describe_error(exc, url) from None
        except BaseException:
            engine.dispose()
            raise
        return cls(engine, url, kinds)

    @classmethod
    def for_run_dir(cls, run_dir: Path, *, create: bool = False,
                    kinds: dict[str, type[Record]] | None = None) -> LineageStore:
        """The SQLite store of a run directory (``run_dir/lineage.sqlite``)."""
        path = Path(run_dir) / STORE_FILE
        if not create and not path.is_file():
            raise StoreNotFound(f"no lineage store in {run_dir} ({STORE_FILE} is missing)")
        return cls.open(f"sqlite:///{path}", create=create, kinds=kinds)

    def close(self) -> None:
        with self._lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
        self.engine.dispose()

    def __enter__(self) -> LineageStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _insert(self, table: Table) -> Any:
        return postgresql.insert(table) if self.dialect == "postgresql" else sqlite.insert(table)

    def _write(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(conn, *args)`` in one transaction on the store's one writer connection, one
        writer at a time (streamed stages write from their own threads). One connection keeps one
        page cache, valid from one write to the next (connect.CACHE_KIB)."""
        with self._lock:
            try:
                if self._writer is None or self._writer.closed or self._writer.invalidated:
                    self._writer = self.engine.connect()
                    if self.dialect == "sqlite":
                        self._writer.exec_driver_sql(f"PRAGMA cache_size=-{CACHE_KIB}")
                        self._writer.commit()
                with self._writer.begin():
                    return fn(self._writer, *args)
            except SQLAlchemyError as exc:
                self._next_seq.clear()
                raise describe_error(exc, self.url) from None
            except BaseException:
                self._next_seq.clear()
                raise

    # ---------------------------------------------------------------- runs and stages
    def create_run(self, run_id: str, *, config: dict[str, Any], config_hash: str, code_version: str,
                   loop: str, name: str | None = None) -> None:
        row = dict(id=run_id, name=name, loop=loop, config=config, config_hash=config_hash,
                   code_version=code_version, status="running", started_at=_now(), ended_at=None)
        self._write(lambda c: c.execute(self._insert(t.runs).on_conflict_do_nothing(), row))

    def set_run_status(self, run_id: str, status: str, *, ended: bool = False) -> None:
        values: dict[str, Any] = {"status": status}
        if ended:
            values["ended_at"] = _now()
        self._write(lambda c: c.execute(update(t.runs).where(t.runs.c.id == run_id).values(**values)))

    def _ensure_iteration(self, conn: Connection, run_id: str, iteration: int) -> None:
        conn.execute(self._insert(t.iterations).on_conflict_do_nothing(),
                     dict(run_id=run_id, iteration=iteration, started_at=_now(), ended_at=None))

    def start_iteration(self, run_id: str, iteration: int) -> None:
        self._write(self._ensure_iteration, run_id, iteration)

    def finish_iteration(self, run_id: str, iteration: int) -> None:
        it = t.iterations.c
        stmt = update(t.iterations).where(it.run_id == run_id, it.iteration == iteration)
        self._write(lambda c: c.execute(stmt.values(ended_at=_now())))

    def start_stage(self, run_id: str, iteration: int, role: str, *, kind: str, stage: str, plugin: str,
                    plugin_version: str, options: dict[str, Any], model_version: str | None,
                    attempt_key: str = "") -> str:
        """Record that a stage starts; returns its deterministic execution id (idempotent)."""
        exec_id = execution_id_of(run_id, iteration, role, attempt_key)
        row = dict(id=exec_id, run_id=run_id, iteration=iteration, role=role, attempt_key=attempt_key,
                   kind=kind, stage=stage, plugin=plugin, plugin_version=plugin_version, options=options,
                   model_version=model_version, started_at=_now(), ended_at=None, seconds=None,
                   n_in=None, n_out=None, error=None, finished=False)

        def go(conn: Connection) -> None:
            self._ensure_iteration(conn, run_id, iteration)
            conn.execute(self._insert(t.stage_executions).on_conflict_do_nothing(), row)

        self._write(go)
        return exec_id

    def finish_stage(self, execution_id: str, *, n_in: int, n_out: int, seconds: float,
                     error: str | None = None, finished: bool | None = None) -> None:
        """Record the end of a stage execution. ``finished`` (default: no ``error``) says whether its
        outputs are complete, so a resumed run reuses them; ``error`` is kept either way (a note such
        as "2 record(s) failed and were skipped" on a finished execution)."""
        stmt = (update(t.stage_executions).where(t.stage_executions.c.id == execution_id)
                .values(n_in=n_in, n_out=n_out, seconds=seconds, error=error, ended_at=_now(),
                        finished=error is None if finished is None else finished))
        if self._write(lambda c: c.execute(stmt).rowcount) == 0:
            raise StoreError(f"unknown stage execution {execution_id!r}")

    def stage_execution(self, execution_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            se = t.stage_executions
            row = conn.execute(select(se).where(se.c.id == execution_id)).first()
        return dict(row._mapping) if row is not None else None

    def runs(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.runs).order_by(t.runs.c.started_at, t.runs.c.id)).all()
        return [dict(r._mapping) for r in rows]

    # ---------------------------------------------------------------- records
    def write_records(self, run_id: str, iteration: int, execution_id: str, records: Sequence[Record]) -> int:
        """Bulk-insert records, their parent edges and their place among the execution's outputs.
        Idempotent: returns how many records were new to this execution."""
        if not records:
            return 0
        rows = RecordRows.build(run_id, iteration, execution_id, records)
        return int(self._write(lambda conn: self._append(conn, execution_id, rows)[1]))

    def _append(self, conn: Connection, execution_id: str, rows: RecordRows) -> tuple[int, int]:
        """Insert ``rows`` as the execution's next outputs, in the caller's transaction; returns
        (the first ``seq`` they took, how many were new). A failed transaction forgets the cached
        next ``seq`` (``_write``), so it is read again from the table."""
        start = self._next_seq.get(execution_id)
        if start is None:
            o = t.outputs.c
            start = conn.execute(select(func.coalesce(func.max(o.seq) + 1, 0))
                                 .where(o.execution_id == execution_id)).scalar_one()
        n = insert_rows(conn, rows, rows.outputs(execution_id, start))
        self._next_seq[execution_id] = start + len(rows.kinds)
        return start, n

    def get_record(self, record_id: str) -> Record:
        """The typed record with this id; raises :class:`UnknownRecord` when absent."""
        with self.engine.connect() as conn:
            got = load_records(conn, [record_id], self.kinds)
        if not got:
            raise UnknownRecord(record_id)
        return got[0]

    def get_records(self, record_ids: Sequence[str]) -> list[Record]:
        """The typed records with these ids, in the order given (absent ids are left out)."""
        with self.engine.connect() as conn:
            return load_records(conn, list(record_ids), self.kinds)

    def has_records(self, execution_id: str) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(select(t.outputs.c.record_id)
                                .where(t.outputs.c.execution_id == execution_id).limit(1)).first() is not None

    def records_of(self, execution_id: str) -> list[Record]:
        """The records a stage execution emitted, in write order (for resuming)."""
        o = t.outputs.c
        with self.engine.connect() as conn:
            ids = list(conn.execute(select(o.record_id).where(o.execution_id == execution_id)
                                    .order_by(o.seq, o.record_id)).scalars())
            return load_records(conn, ids, self.kinds)

    # ---------------------------------------------------------------- models and metrics
    def add_model_version(self, version_id: str, *, run_id: str, base_model: str, adapter_path: str | None,
                          checkpoint_hash: str | None, parent_version: str | None, execution_id: str | None,
                          trained_on: Sequence[str] = ()) -> None:
        row = dict(id=version_id, run_id=run_id, base_model=base_model, adapter_path=adapter_path,
                   checkpoint_hash=checkpoint_hash, parent_version=parent_version,
                   execution_id=execution_id, created_at=_now())
        data = [dict(model_version=version_id, record_id=r) for r in sorted(set(trained_on))]

        def go(conn: Connection) -> None:
            conn.execute(self._insert(t.model_versions).on_conflict_do_nothing(), row)
            if data:
                conn.execute(self._insert(t.training_data).on_conflict_do_nothing(), data)

        self._write(go)

    def get_model_version(self, version_id: str) -> dict[str, Any] | None:
        mv, td = t.model_versions, t.training_data
        with self.engine.connect() as conn:
            row = conn.execute(select(mv).where(mv.c.id == version_id)).first()
            if row is None:
                return None
            n = conn.execute(select(func.count()).select_from(td)
                             .where(td.c.model_version == version_id)).scalar_one()
        return dict(row._mapping, n_trained_on=int(n))

    def model_version_made_by(self, execution_id: str) -> str | None:
        """The id of the model version a (training) stage execution recorded, if any."""
        mv = t.model_versions.c
        with self.engine.connect() as conn:
            return conn.execute(select(mv.id).where(mv.execution_id == execution_id)).scalar()

    def trained_on(self, version_id: str) -> list[str]:
        td = t.training_data.c
        with self.engine.connect() as conn:
            return list(conn.execute(select(td.record_id).where(td.model_version == version_id)
                                     .order_by(td.record_id)).scalars())

    def add_metrics(self, run_id: str, iteration: int, model_version: str | None,
                    results: Sequence[EvalResult]) -> None:
        """Store evaluation results; the same (iteration, model, evaluator, metric) is updated."""
        rows = {(r.evaluator, r.metric): dict(
            run_id=run_id, iteration=iteration, model_key=model_version or "", evaluator=r.evaluator,
            metric=r.metric, model_version=model_version, value=float(r.value), n=r.n, details=r.details,
            record_id=r.id) for r in results}
        if not rows:
            return
        stmt = self._insert(t.metrics)
        stmt = stmt.on_conflict_do_update(
            index_elements=["run_id", "iteration", "model_key", "evaluator", "metric"],
            set_={c: stmt.excluded[c] for c in ("value", "n", "details", "record_id")})
        self._write(lambda c: c.execute(stmt, list(rows.values())))

    # ---------------------------------------------------------------- training steps
    def add_training_steps(self, run_id: str, iteration: int, model_version: str | None, role: str,
                           steps: Sequence[Mapping[str, float]]) -> None:
        """Store the per-optimizer-step metrics of the training of adapter ``role`` (one dict per
        step: its ``step``, else its 1-based place, and its metrics). Non-finite values are left
        out; a step stored again (a training redone after a crash) is updated."""
        rows = {}
        for i, entry in enumerate(steps):
            step = int(entry.get("step", i + 1))
            for name, value in entry.items():
                if name != "step" and isinstance(value, int | float) and math.isfinite(value):
                    rows[(step, name)] = dict(run_id=run_id, iteration=iteration, role=role, step=step,
                                              metric=name[:100], model_version=model_version,
                                              value=float(value))
        if not rows:
            return
        stmt = self._insert(t.training_steps)
        stmt = stmt.on_conflict_do_update(
            index_elements=["run_id", "iteration", "role", "step", "metric"],
            set_={c: stmt.excluded[c] for c in ("value", "model_version")})
        self._write(lambda c: c.execute(stmt, list(rows.values())))

    def training_steps(self, run_id: str) -> list[dict[str, Any]]:
        """The run's training-step metrics: dicts of iteration, role, step, metric, value and
        model_version, ordered by iteration, role, metric and step."""
        ts = t.training_steps.c
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.training_steps).where(ts.run_id == run_id)
                                .order_by(ts.iteration, ts.role, ts.metric, ts.step)).all()
        return [dict(r._mapping) for r in rows]
