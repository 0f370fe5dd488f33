"""After a sweep's deletions are verified, VACUUM runs on the tables they touched and the ledger records it,
so a certificate can say what happened to the deleted rows' bytes (dead tuples until VACUUM)."""

from __future__ import annotations

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
    tables = vacuumed[0].payload["tables"]
    engine = sa.create_engine(stack.app_url)
    with engine.connect() as conn:  # PostgreSQL's own statistics say VACUUM ran on each of them
        ran = dict(conn.execute(sa.text("SELECT relname, vacuum_count FROM pg_stat_user_tables")).all())
    engine.dispose()
    assert all(ran[table.split(".")[-1]] >= 1 for table in tables)


def test_a_dry_run_vacuums_nothing(stack) -> None:
    with Ledger.open(stack.ledger_url) as ledger:
        report = sweep(SweepContext.load(Settings.from_env(), ledger), stack.now, dry_run=True, actor="test")
        assert ledger.run_events(report.run_id, "storage.vacuumed", "storage.vacuum_failed") == []
