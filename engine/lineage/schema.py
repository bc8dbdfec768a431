"""SQLAlchemy models of the lineage store: runs, iterations, stage executions and their chunks,
records, outputs, edges, model versions, training data, metrics and training steps.

What it is: the table definitions the store and the queries read and write (as Core tables via
``Model.__table__``). What it is not: the migrations (engine/lineage/migrations holds frozen
copies; a test checks they match these models) nor any query logic.

Records are stored once per id (ids are content hashes). Which stage execution emitted which
records lives in ``outputs``, so the same record emitted by two executions (a repeated seed, a
filter passing a record through) is listed under both without a second copy.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

JSONType = JSON().with_variant(JSONB(), "postgresql")
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSONType, datetime: DateTime(timezone=True)}


class Run(Base):
    __tablename__ = "runs"
    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(200))
    loop: Mapped[str] = mapped_column(String(100))
    config: Mapped[dict[str, Any]]
    config_hash: Mapped[str] = mapped_column(String(64))
    code_version: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(32), default="running")
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]


class Iteration(Base):
    __tablename__ = "iterations"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    iteration: Mapped[int] = mapped_column(Integer, primary_key=True)
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]


class StageExecution(Base):
    __tablename__ = "stage_executions"
    __table_args__ = (
        ForeignKeyConstraint(["run_id", "iteration"], ["iterations.run_id", "iterations.iteration"],
                             ondelete="CASCADE"),
        UniqueConstraint("run_id", "iteration", "role", "attempt_key"),
    )
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    run_id: Mapped[str] = mapped_column(String(200))
    iteration: Mapped[int]
    role: Mapped[str] = mapped_column(String(100))
    attempt_key: Mapped[str] = mapped_column(String(200), default="")
    kind: Mapped[str] = mapped_column(String(32))
    stage: Mapped[str] = mapped_column(String(100))
    plugin: Mapped[str] = mapped_column(String(200))
    plugin_version: Mapped[str] = mapped_column(String(100))
    options: Mapped[dict[str, Any]]
    model_version: Mapped[str | None] = mapped_column(String(200))
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    seconds: Mapped[float | None] = mapped_column(Float)
    n_in: Mapped[int | None]
    n_out: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(Text)
    finished: Mapped[bool] = mapped_column(Boolean, default=False)


class StageChunk(Base):
    """Chunk ``chunk`` of a streamed stage execution finished: ``ids`` holds the ids of its outputs
    and of its side outputs, in order (``{"outputs": [...], "side": [...]}``; a record made again
    by a later chunk, or by a chunk run again, is listed there though the execution stores it
    once). Written in the same transaction as those records, so a chunk is either whole or absent:
    a resumed run redoes only the chunks without a row (those in flight), and ``inputs_hash`` (of
    the chunk's input ids) makes it redo a chunk whose inputs changed."""

    __tablename__ = "stage_chunks"
    __table_args__ = ({"sqlite_with_rowid": False},)
    execution_id: Mapped[str] = mapped_column(ForeignKey("stage_executions.id", ondelete="CASCADE"),
                                              primary_key=True)
    chunk: Mapped[int] = mapped_column(Integer, primary_key=True)
    inputs_hash: Mapped[str] = mapped_column(String(64))
    n_in: Mapped[int]
    n_out: Mapped[int]
    n_side: Mapped[int]
    seconds: Mapped[float] = mapped_column(Float)
    ids: Mapped[dict[str, Any]]


class RecordRow(Base):
    """One record, stored once; run/iteration/execution are those of its first writer.

    Foreign keys guard what callers pass in (an execution must exist: ``outputs.execution_id``);
    the rows that write_records derives from one call (records, edges, outputs) are consistent by
    construction and carry no foreign keys to each other: on PostgreSQL each one is a per-row
    trigger, and together they halved bulk ingest."""

    __tablename__ = "records"
    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    run_id: Mapped[str] = mapped_column(String(200))
    iteration: Mapped[int]
    execution_id: Mapped[str] = mapped_column(String(64))
    model_version: Mapped[str | None] = mapped_column(String(200))
    content_hash: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]]


class Output(Base):
    """That stage execution ``execution_id`` emitted record ``record_id`` (``seq``: write order).

    Small rows keyed by their primary key, so SQLite stores them WITHOUT ROWID (as ``edges``):
    one B-tree insert per row instead of two. Queries by run and iteration go through
    ``stage_executions``."""

    __tablename__ = "outputs"
    __table_args__ = ({"sqlite_with_rowid": False},)
    execution_id: Mapped[str] = mapped_column(ForeignKey("stage_executions.id", ondelete="CASCADE"),
                                              primary_key=True)
    record_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    seq: Mapped[int]
    kind: Mapped[str] = mapped_column(String(64))


class Edge(Base):
    """``parent_id`` -> ``child_id`` with a role. The parent need not be stored (no foreign key)."""

    __tablename__ = "edges"
    __table_args__ = (Index(None, "parent_id"), {"sqlite_with_rowid": False})
    child_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    parent_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    role: Mapped[str] = mapped_column(String(32), primary_key=True)
    pos: Mapped[int]  # the parent's place in the child's ``parents`` list


class ModelVersion(Base):
    __tablename__ = "model_versions"
    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    base_model: Mapped[str] = mapped_column(String(300))
    adapter_path: Mapped[str | None] = mapped_column(Text)
    checkpoint_hash: Mapped[str | None] = mapped_column(String(64))
    parent_version: Mapped[str | None] = mapped_column(String(200))
    execution_id: Mapped[str | None] = mapped_column(ForeignKey("stage_executions.id", ondelete="SET NULL"))
    created_at: Mapped[datetime]


class TrainingData(Base):
    """Record ``record_id`` was a training example of model version ``model_version``."""

    __tablename__ = "training_data"
    __table_args__ = (Index(None, "record_id"),)
    model_version: Mapped[str] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"),
                                               primary_key=True)
    record_id: Mapped[str] = mapped_column(String(255), primary_key=True)


class Metric(Base):
    """One evaluation result; ``model_key`` is the model version or '' (part of the key)."""

    __tablename__ = "metrics"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    iteration: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_key: Mapped[str] = mapped_column(String(200), primary_key=True)
    evaluator: Mapped[str] = mapped_column(String(100), primary_key=True)
    metric: Mapped[str] = mapped_column(String(100), primary_key=True)
    model_version: Mapped[str | None] = mapped_column(String(200))
    value: Mapped[float] = mapped_column(Float)
    n: Mapped[int]
    details: Mapped[dict[str, Any]]
    record_id: Mapped[str | None] = mapped_column(String(255))


class TrainingStep(Base):
    """One metric (``loss``, ``reward``, ``kl``, ``rewards/chosen``...) of one optimizer step of the
    training of adapter ``role`` in an iteration; ``model_version`` is the version it made. Kept
    apart from ``metrics`` (evaluations), so neither query filters the other out."""

    __tablename__ = "training_steps"
    __table_args__ = ({"sqlite_with_rowid": False},)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    iteration: Mapped[int] = mapped_column(Integer, primary_key=True)
    role: Mapped[str] = mapped_column(String(100), primary_key=True)
    step: Mapped[int] = mapped_column(Integer, primary_key=True)
    metric: Mapped[str] = mapped_column(String(100), primary_key=True)
    model_version: Mapped[str | None] = mapped_column(String(200))
    value: Mapped[float] = mapped_column(Float)


metadata = Base.metadata
runs = cast(Table, Run.__table__)
iterations = cast(Table, Iteration.__table__)
stage_executions = cast(Table, StageExecution.__table__)
stage_chunks = cast(Table, StageChunk.__table__)
records = cast(Table, RecordRow.__table__)
outputs = cast(Table, Output.__table__)
edges = cast(Table, Edge.__table__)
model_versions = cast(Table, ModelVersion.__table__)
training_data = cast(Table, TrainingData.__table__)
metrics = cast(Table, Metric.__table__)
training_steps = cast(Table, TrainingStep.__table__)
