"""Free text leaves the hash chain: ``erasable_texts`` keeps reasons, references and tickets that events
name only by digest, and a legal hold remembers its reference's digest.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HASH, TEXT = 64, 2000


def upgrade() -> None:
    op.create_table(
        "erasable_texts",
        sa.Column("sha256", sa.String(HASH), nullable=False),
        sa.Column("salt", sa.String(HASH), nullable=True),
        sa.Column("text", sa.String(TEXT), nullable=True),
        sa.Column("purpose", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_erasable_texts")),
    )
    # A plain ADD COLUMN (SQLite too): the table is not rebuilt, its CHECK constraint stays as it is.
    op.add_column("legal_holds", sa.Column("reference_sha256", sa.String(HASH), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("legal_holds") as batch:
        batch.drop_column("reference_sha256")
    op.drop_table("erasable_texts")
