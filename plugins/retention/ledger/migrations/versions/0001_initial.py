"""Initial ledger schema: runs, planned tasks, hash-chained events, chain head, legal holds,
certificates.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID, NAME, HASH = 32, 200, 64


def _ts(name: str, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.String(ID), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        _ts("as_of"),
        sa.Column("rules_digest", sa.String(HASH), nullable=False),
        sa.Column("dag_id", sa.String(250), nullable=True),
        sa.Column("airflow_run_id", sa.String(250), nullable=True),
        _ts("started_at"),
        _ts("finished_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
    )
    op.create_table(
        "planned_tasks",
        sa.Column("id", sa.String(ID), nullable=False),
        sa.Column("run_id", sa.String(ID), nullable=False),
        sa.Column("account_id", sa.String(NAME), nullable=False),
        sa.Column("data_class", sa.String(NAME), nullable=False),
        sa.Column("location", sa.String(500), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("rule_id", sa.String(NAME), nullable=False),
        sa.Column("anchor", sa.String(32), nullable=True),
        _ts("cutoff", nullable=True),
        sa.Column("total_count", sa.BigInteger(), nullable=True),
        sa.Column("estimated_count", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(16), server_default="planned", nullable=False),
        sa.Column("skip_reason", sa.String(500), nullable=True),
        sa.Column("checkpoint", sa.JSON(), nullable=True),
        sa.Column("affected_count", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("residue", sa.BigInteger(), nullable=True),
        sa.Column("retained", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_planned_tasks_run_id_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_planned_tasks")),
        sa.UniqueConstraint("run_id", "account_id", "data_class", "location",
                            name=op.f("uq_planned_tasks_run_id_account_id_data_class_location")),
    )
    op.create_index(op.f("ix_planned_tasks_run_id"), "planned_tasks", ["run_id"])
    op.create_table(
        "events",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("event_id", sa.String(ID), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        _ts("occurred_at"),
        sa.Column("actor", sa.String(NAME), nullable=False),
        sa.Column("run_id", sa.String(ID), nullable=True),
        sa.Column("task_id", sa.String(NAME), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(HASH), nullable=False),
        sa.Column("hash", sa.String(HASH), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_events_run_id_runs")),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_events")),
        sa.UniqueConstraint("event_id", name=op.f("uq_events_event_id")),
        sa.UniqueConstraint("hash", name=op.f("uq_events_hash")),
    )
    op.create_index(op.f("ix_events_run_id"), "events", ["run_id"])
    head = op.create_table(
        "chain_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(HASH), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_chain_head_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chain_head")),
    )
    # The head row exists from the start so appenders always have a row to lock.
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": "0" * 64}])
    op.create_table(
        "legal_holds",
        sa.Column("id", sa.String(ID), nullable=False),
        sa.Column("account_id", sa.String(NAME), nullable=True),
        sa.Column("data_class", sa.String(NAME), nullable=True),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("reference", sa.String(NAME), nullable=False),
        sa.Column("placed_by", sa.String(NAME), nullable=False),
        _ts("placed_at"),
        _ts("released_at", nullable=True),
        sa.Column("released_by", sa.String(NAME), nullable=True),
        sa.Column("release_reason", sa.String(500), nullable=True),
        sa.CheckConstraint("account_id IS NOT NULL OR data_class IS NOT NULL",
                           name=op.f("ck_legal_holds_scoped")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_legal_holds")),
    )
    op.create_table(
        "certificates",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("account_id", sa.String(NAME), nullable=False),
        _ts("issued_at"),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("chain_head_hash", sa.String(HASH), nullable=False),
        sa.Column("key_id", sa.String(NAME), nullable=True),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_certificates")),
    )
    op.create_index(op.f("ix_certificates_account_id"), "certificates", ["account_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_certificates_account_id"), table_name="certificates")
    op.drop_table("certificates")
    op.drop_table("legal_holds")
    op.drop_table("chain_head")
    op.drop_index(op.f("ix_events_run_id"), table_name="events")
    op.drop_table("events")
    op.drop_index(op.f("ix_planned_tasks_run_id"), table_name="planned_tasks")
    op.drop_table("planned_tasks")
    op.drop_table("runs")
