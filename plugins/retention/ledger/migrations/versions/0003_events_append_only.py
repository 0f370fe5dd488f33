"""Ledger events are append-only in the database itself: UPDATE, DELETE (and on PostgreSQL TRUNCATE) of
``events`` are refused by triggers, whoever the connected role is.

The hash chain lets ``retention ledger verify`` *detect* a rewritten history; these triggers *refuse* the
rewrite. Only ``events`` is locked: the product updates ``chain_head``, ``runs``, ``planned_tasks`` and
``legal_holds`` (a release) in normal operation. A role that owns the table can still drop the trigger, so
the product connects as a runtime role that does not own it (see ``retention.ledger.roles``).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FUNCTION = "ledger_events_append_only"
ROW_TRIGGER, TRUNCATE_TRIGGER = "events_append_only", "events_no_truncate"
SQLITE_TRIGGERS = {"events_no_update": "UPDATE", "events_no_delete": "DELETE"}
MESSAGE = "ledger events are append-only"

_PG_FUNCTION = f"""
CREATE OR REPLACE FUNCTION {FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '{MESSAGE}: % on %.% refused', TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation';
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_FUNCTION)
        op.execute(f"CREATE TRIGGER {ROW_TRIGGER} BEFORE UPDATE OR DELETE ON events "
                   f"FOR EACH ROW EXECUTE FUNCTION {FUNCTION}()")
        # TRUNCATE fires no row triggers, so it needs its own statement-level one.
        op.execute(f"CREATE TRIGGER {TRUNCATE_TRIGGER} BEFORE TRUNCATE ON events "
                   f"FOR EACH STATEMENT EXECUTE FUNCTION {FUNCTION}()")
    else:  # SQLite has no TRUNCATE; a trigger also turns off its DELETE-everything shortcut.
        for name, operation in SQLITE_TRIGGERS.items():
            op.execute(f"CREATE TRIGGER {name} BEFORE {operation} ON events "
                       f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}: {operation} on events refused'); END")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP TRIGGER IF EXISTS {TRUNCATE_TRIGGER} ON events")
        op.execute(f"DROP TRIGGER IF EXISTS {ROW_TRIGGER} ON events")
        op.execute(f"DROP FUNCTION IF EXISTS {FUNCTION}()")
    else:
        for name in SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
