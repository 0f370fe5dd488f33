"""The Alembic migration and the SQLAlchemy models describe the same schema, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from retention.ledger import VERSION_TABLE, Base, create_ledger_engine, head_revision, migrate


def test_the_migration_and_the_models_agree(ledger_url: str) -> None:
    migrate(ledger_url)
    engine = create_ledger_engine(ledger_url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={
                "version_table": VERSION_TABLE, "compare_type": True,
                "compare_server_default": False})
            assert ctx.get_current_revision() == head_revision() == "0007"
            assert compare_metadata(ctx, Base.metadata) == []
            assert set(inspect(conn).get_table_names()) == {
                "runs", "planned_tasks", "events", "chain_head", "legal_holds", "erasable_texts",
                "certificates", "cohort_checkpoints", "subject_requests", "customer_credentials", VERSION_TABLE}
    finally:
        engine.dispose()


def test_the_chain_head_row_is_seeded_by_the_migration(ledger_url: str) -> None:
    migrate(ledger_url)
    engine = create_ledger_engine(ledger_url)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT id, seq, hash FROM chain_head").all() == [(1, 0, "0" * 64)]
    finally:
        engine.dispose()


def test_the_migration_downgrades_to_an_empty_database(ledger_url: str) -> None:
    from alembic import command

    from retention.ledger.database import _alembic_config

    migrate(ledger_url)
    engine = create_ledger_engine(ledger_url)
    try:
        with engine.begin() as conn:
            command.downgrade(_alembic_config(conn), "base")
        with engine.connect() as conn:
            assert set(inspect(conn).get_table_names()) <= {VERSION_TABLE}
    finally:
        engine.dispose()
    migrate(ledger_url)  # and up again
