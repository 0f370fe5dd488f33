"""Cohort checkpoints: where a set-based deletion of many accounts at one location stands, and the per-task
counts of the batch in flight (kept out of the hash chain).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "cohort_checkpoints",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("location", sa.String(500), nullable=False),
        sa.Column("after", sa.String(2000), nullable=True),
        sa.Column("pending", sa.JSON(), nullable=True),
        sa.Column("fence", sa.BigInteger(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_cohort_checkpoints_run_id_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cohort_checkpoints")),
    )
    op.create_index(op.f("ix_cohort_checkpoints_run_id"), "cohort_checkpoints", ["run_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_cohort_checkpoints_run_id"), table_name="cohort_checkpoints")
    op.drop_table("cohort_checkpoints")
