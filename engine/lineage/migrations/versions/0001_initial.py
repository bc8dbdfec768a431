"""Initial lineage schema: runs, iterations, stage executions, records, outputs, edges, model
versions, training data, metrics (a frozen copy of engine/lineage/schema.py at revision 0001).

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSON_T = sa.JSON().with_variant(JSONB(), "postgresql")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.String(200), nullable=False),
        sa.Column("name", sa.String(200)),
        sa.Column("loop", sa.String(100), nullable=False),
        sa.Column("config", JSON_T, nullable=False),
        sa.Column("config_hash", sa.String(64), nullable=False),
        sa.Column("code_version", sa.String(100), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("ended_at", TS),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
    )
    op.create_table(
        "iterations",
        sa.Column("run_id", sa.String(200), nullable=False),
        sa.Column("iteration", sa.Integer(), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("ended_at", TS),
        sa.PrimaryKeyConstraint("run_id", "iteration", name="pk_iterations"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"],
                                name="fk_iterations_run_id_runs", ondelete="CASCADE"),
    )
    op.create_table(
        "stage_executions",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("run_id", sa.String(200), nullable=False),
        sa.Column("iteration", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(100), nullable=False),
        sa.Column("attempt_key", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("stage", sa.String(100), nullable=False),
        sa.Column("plugin", sa.String(200), nullable=False),
        sa.Column("plugin_version", sa.String(100), nullable=False),
        sa.Column("options", JSON_T, nullable=False),
        sa.Column("model_version", sa.String(200)),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("ended_at", TS),
        sa.Column("seconds", sa.Float()),
        sa.Column("n_in", sa.Integer()),
        sa.Column("n_out", sa.Integer()),
        sa.Column("error", sa.Text()),
        sa.Column("finished", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_stage_executions"),
        sa.ForeignKeyConstraint(["run_id", "iteration"], ["iterations.run_id", "iterations.iteration"],
                                name="fk_stage_executions_run_id_iterations", ondelete="CASCADE"),
        sa.UniqueConstraint("run_id", "iteration", "role", "attempt_key",
                            name="uq_stage_executions_run_id_iteration_role_attempt_key"),
    )
    op.create_table(
        "records",
        sa.Column("id", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("run_id", sa.String(200), nullable=False),
        sa.Column("iteration", sa.Integer(), nullable=False),
        sa.Column("execution_id", sa.String(64), nullable=False),
        sa.Column("model_version", sa.String(200)),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("payload", JSON_T, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_records"),
    )
    op.create_table(
        "outputs",
        sa.Column("execution_id", sa.String(64), nullable=False),
        sa.Column("record_id", sa.String(255), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("execution_id", "record_id", name="pk_outputs"),
        sa.ForeignKeyConstraint(["execution_id"], ["stage_executions.id"],
                                name="fk_outputs_execution_id_stage_executions", ondelete="CASCADE"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "edges",
        sa.Column("child_id", sa.String(255), nullable=False),
        sa.Column("parent_id", sa.String(255), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("pos", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("child_id", "parent_id", "role", name="pk_edges"),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_edges_parent_id", "edges", ["parent_id"])
    op.create_table(
        "model_versions",
        sa.Column("id", sa.String(200), nullable=False),
        sa.Column("run_id", sa.String(200), nullable=False),
        sa.Column("base_model", sa.String(300), nullable=False),
        sa.Column("adapter_path", sa.Text()),
        sa.Column("checkpoint_hash", sa.String(64)),
        sa.Column("parent_version", sa.String(200)),
        sa.Column("execution_id", sa.String(64)),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_model_versions"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"],
                                name="fk_model_versions_run_id_runs", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["execution_id"], ["stage_executions.id"], ondelete="SET NULL",
                                name="fk_model_versions_execution_id_stage_executions"),
    )
    op.create_table(
        "training_data",
        sa.Column("model_version", sa.String(200), nullable=False),
        sa.Column("record_id", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("model_version", "record_id", name="pk_training_data"),
        sa.ForeignKeyConstraint(["model_version"], ["model_versions.id"],
                                name="fk_training_data_model_version_model_versions", ondelete="CASCADE"),
    )
    op.create_index("ix_training_data_record_id", "training_data", ["record_id"])
    op.create_table(
        "metrics",
        sa.Column("run_id", sa.String(200), nullable=False),
        sa.Column("iteration", sa.Integer(), nullable=False),
        sa.Column("model_key", sa.String(200), nullable=False),
        sa.Column("evaluator", sa.String(100), nullable=False),
        sa.Column("metric", sa.String(100), nullable=False),
        sa.Column("model_version", sa.String(200)),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("details", JSON_T, nullable=False),
        sa.Column("record_id", sa.String(255)),
        sa.PrimaryKeyConstraint("run_id", "iteration", "model_key", "evaluator", "metric", name="pk_metrics"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"],
                                name="fk_metrics_run_id_runs", ondelete="CASCADE"),
    )


def downgrade() -> None:
    for table in ("metrics", "training_data", "model_versions", "edges", "outputs", "records",
                  "stage_executions", "iterations", "runs"):
        op.drop_table(table)
