"""Stage chunks: which chunks of a streamed stage execution finished (a frozen copy of
``StageChunk`` in engine/lineage/schema.py at revision 0003).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stage_chunks",
        sa.Column("execution_id", sa.String(64), nullable=False),
        sa.Column("chunk", sa.Integer(), nullable=False),
        sa.Column("inputs_hash", sa.String(64), nullable=False),
        sa.Column("n_in", sa.Integer(), nullable=False),
        sa.Column("n_out", sa.Integer(), nullable=False),
        sa.Column("n_side", sa.Integer(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("ids", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.PrimaryKeyConstraint("execution_id", "chunk", name="pk_stage_chunks"),
        sa.ForeignKeyConstraint(["execution_id"], ["stage_executions.id"],
                                name="fk_stage_chunks_execution_id_stage_executions", ondelete="CASCADE"),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    op.drop_table("stage_chunks")
