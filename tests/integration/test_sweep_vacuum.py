"""After a sweep's deletions are verified, VACUUM runs on the tables they touched and the ledger records it,
so a certificate can say what happened to the deleted rows' bytes (dead tuples until VACUUM)."""

from __future__ import annotations

import time

import sqlalchemy as sa

from retention.engine import SweepContext, sweep
from retention.ledger import Ledger
from retention.settings import Settings


def test_a_sweep_vacuums_the_tables_its_verified_deletions_touched(stack) -> None:
    with Ledger.open(stack.ledger_url) as ledger:
        ctx = SweepContext.load(Settings.from_env(), ledger)
        report = sweep(ctx, stack.now, dry_run=False, actor="test")
        vacuumed = ledger.run_events(report.run_id, "storage.vacuumed")
        touched = {t.location for t in ledger.tasks(report.run_id)
                   if t.status == "verified" and t.affected_count and ctx.inventory.locations[t.location].kind == "sql"}
    assert touched and [set(e.payload["locations"]) for e in vacuumed] == [touched]
    tables = {table.split(".")[-1] for table in vacuumed[0].payload["tables"]}
    assert vacuumed_by_postgres(stack.app_url, tables) >= tables  # PostgreSQL's own statistics agree


def vacuumed_by_postgres(url: str, expected: set[str]) -> set[str]:
    """Tables whose statistics count a VACUUM. They are published asynchronously: read until the expected
    ones are there, or a generous deadline passes."""
    engine = sa.create_engine(url)
    try:
        deadline = time.monotonic() + 60
        while True:
            with engine.connect() as conn:
                found = set(conn.execute(sa.text(
                    "SELECT relname FROM pg_stat_user_tables WHERE vacuum_count > 0")).scalars())
            if found >= expected or time.monotonic() > deadline:
                return found
            time.sleep(0.2)
    finally:
        engine.dispose()


def test_a_dry_run_vacuums_nothing(stack) -> None:
    with Ledger.open(stack.ledger_url) as ledger:
        report = sweep(SweepContext.load(Settings.from_env(), ledger), stack.now, dry_run=True, actor="test")
        assert ledger.run_events(report.run_id, "storage.vacuumed", "storage.vacuum_failed") == []
