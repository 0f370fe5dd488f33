"""A legal hold's release is proven by the chain: ``released_seq`` names its ``hold.released`` event.

Holds released before this revision get the seq of the ``hold.released`` event whose payload names them;
a released hold with no such event keeps NULL, an unproven release, and is in force again.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A plain ADD COLUMN (SQLite too): the table is not rebuilt, its CHECK constraint stays as it is.
    op.add_column("legal_holds", sa.Column("released_seq", sa.BigInteger(), nullable=True))
    events = sa.table("events", sa.column("seq", sa.BigInteger()), sa.column("kind", sa.String()),
                      sa.column("payload", sa.JSON()))
    holds = sa.table("legal_holds", sa.column("id", sa.String()), sa.column("released_at", sa.DateTime()),
                     sa.column("released_seq", sa.BigInteger()))
    conn = op.get_bind()
    release_seq = {}  # hold id -> seq of the last hold.released event naming it
    for seq, payload in conn.execute(sa.select(events.c.seq, events.c.payload)
                                     .where(events.c.kind == "hold.released").order_by(events.c.seq)):
        if isinstance(payload, dict) and isinstance(payload.get("hold_id"), str):
            release_seq[payload["hold_id"]] = seq
    # Only the seq is recorded here; whether that event proves the release is decided on every read.
    for hold_id in conn.execute(sa.select(holds.c.id).where(holds.c.released_at.is_not(None))).scalars():
        if hold_id in release_seq:
            conn.execute(sa.update(holds).where(holds.c.id == hold_id).values(released_seq=release_seq[hold_id]))


def downgrade() -> None:
    with op.batch_alter_table("legal_holds") as batch:
        batch.drop_column("released_seq")
