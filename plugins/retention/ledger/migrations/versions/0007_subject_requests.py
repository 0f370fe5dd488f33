"""Data subject requests, the customer API's credentials, and the subject scope of a planned task.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "subject_requests",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("account_id", sa.String(200), nullable=False),
        sa.Column("request_type", sa.String(16), nullable=False),
        sa.Column("regime", sa.String(8), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deadline_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reference_sha256", sa.String(64), nullable=False),
        sa.Column("identifiers", sa.JSON(), nullable=True),
        sa.Column("identifier_hashes", sa.JSON(), nullable=False),
        sa.Column("filed_by", sa.String(200), nullable=False),
        sa.Column("filed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recipient", sa.String(100), nullable=True),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("run_id", sa.String(32), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("identifiers_erased_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subject_requests")),
    )
    op.create_index(op.f("ix_subject_requests_account_id"), "subject_requests", ["account_id"])
    op.create_index(op.f("ix_subject_requests_run_id"), "subject_requests", ["run_id"])
    op.create_table(
        "customer_credentials",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("account_id", sa.String(200), nullable=False),
        sa.Column("secret_sha256", sa.String(64), nullable=False),
        sa.Column("issued_by", sa.String(200), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_by", sa.String(200), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_credentials")),
    )
    op.create_index(op.f("ix_customer_credentials_account_id"), "customer_credentials", ["account_id"])
    with op.batch_alter_table("planned_tasks") as batch:
        batch.add_column(sa.Column("subject_request_id", sa.String(32), nullable=True))
        batch.create_index(batch.f("ix_planned_tasks_subject_request_id"), ["subject_request_id"])


def downgrade() -> None:
    with op.batch_alter_table("planned_tasks") as batch:
        batch.drop_index(batch.f("ix_planned_tasks_subject_request_id"))
        batch.drop_column("subject_request_id")
    op.drop_index(op.f("ix_customer_credentials_account_id"), table_name="customer_credentials")
    op.drop_table("customer_credentials")
    op.drop_index(op.f("ix_subject_requests_run_id"), table_name="subject_requests")
    op.drop_index(op.f("ix_subject_requests_account_id"), table_name="subject_requests")
    op.drop_table("subject_requests")
