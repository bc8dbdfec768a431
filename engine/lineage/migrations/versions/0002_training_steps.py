"""Training steps: one row per metric of each optimizer step of a training (a frozen copy of
``TrainingStep`` in engine/lineage/schema.py at revision 0002).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "training_steps",
        sa.Column("run_id", sa.String(200), nullable=False),
        sa.Column("iteration", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(100), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("metric", sa.String(100), nullable=False),
        sa.Column("model_version", sa.String(200)),
        sa.Column("value", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "iteration", "role", "step", "metric", name="pk_training_steps"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"],
                                name="fk_training_steps_run_id_runs", ondelete="CASCADE"),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    op.drop_table("training_steps")
