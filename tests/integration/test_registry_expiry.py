"""While the account registry has refused rows, no backup expires: a refused account's backup period is unknown,
and a whole-database snapshot holds every account (real PostgreSQL registry, S3 over HTTP)."""

from __future__ import annotations

from pathlib import Path

import pendulum
import pytest
import sqlalchemy as sa

from retention import embedded
from retention.backups import LocalKeystore, SnapshotCatalog
from retention.engine import SweepContext
from retention.ledger import Ledger
from retention.offboarding import backups
from retention.rules import load_accounts, load_ruleset
from retention.settings import Settings

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def ledger(stack):
    with Ledger.open(stack.ledger_url) as opened:
        yield opened


@pytest.fixture
def app_registry(stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The registry read from the application's accounts table, the demo's accounts in it."""
    monkeypatch.delenv("RETENTION_ACCOUNTS_FILE")
    monkeypatch.setenv("RETENTION_HOME", str(tmp_path / "home"))
    accounts = load_accounts(REPO / "demo" / "accounts.yaml", load_ruleset(REPO / "retention_rules"))
    embedded.seed_accounts(stack.app_url, accounts.values())
    return stack


def refuse_row(stack, account_id: str) -> None:
    engine = sa.create_engine(stack.app_url)
    with engine.begin() as conn:  # a timestamp the application wrote without its timezone, as text
        conn.execute(sa.text("ALTER TABLE accounts ALTER COLUMN created_at TYPE text"))
        conn.execute(sa.text("UPDATE accounts SET created_at = '2023-01-09 08:00' WHERE id = :id"), {"id": account_id})
    engine.dispose()


def test_no_snapshot_or_copy_expires_while_a_registry_row_is_refused(app_registry, ledger, tmp_path: Path) -> None:
    stack, settings = app_registry, Settings.from_env()
    catalog = SnapshotCatalog(embedded.s3_client(stack.endpoint), "backups", "app_db/", "app_db")
    dump = tmp_path / "old.dump"
    dump.write_bytes(b"PGDMP")
    now = pendulum.now("UTC")
    old = catalog.put(dump, now.subtract(days=40))  # past the 35 days the backup rule keeps snapshots
    copy = backups.copy_account(SweepContext.load(settings, ledger), "acct_1001", settings, now.subtract(days=40),
                                actor="test", store=LocalKeystore(settings.keystore_dir))
    refuse_row(stack, "acct_5005")

    ctx = SweepContext.load(settings, ledger)
    assert ctx.registry is not None and [r.account_id for r in ctx.registry.rejected] == ["acct_5005"]
    assert backups.expire_snapshots(ctx, settings, now, actor="test", snapshot_catalog=catalog) == []
    assert backups.expire_copies(ctx, settings, now, actor="test") == []
    assert catalog.exists(old.id)
    assert ctx.ledger.events_of_kind("backup.snapshot_expired") == []
    assert ctx.ledger.events_of_kind("backup.copy_expired") == []
    refused = ctx.ledger.events_of_kind("backup.expiry_refused")
    assert [(e.payload["what"], e.payload["reason"], e.payload["rejected"]) for e in refused] == [
        (what, "registry_rows_refused", [{"account_id": "acct_5005", "reason": "naive_timestamp",
                                          "field": "created_at"}]) for what in ("snapshots", "copies")]
    backups.expire_snapshots(ctx, settings, now, actor="test", snapshot_catalog=catalog)  # the next day: said once
    assert len(ctx.ledger.events_of_kind("backup.expiry_refused")) == 2

    # Once the row is fixed, the same expiry goes ahead.
    engine = sa.create_engine(stack.app_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE accounts SET created_at = '2023-01-09T08:00:00Z' WHERE id = 'acct_5005'"))
    engine.dispose()
    fixed = SweepContext.load(settings, ledger)
    assert fixed.registry is not None and not fixed.registry.rejected
    assert backups.expire_snapshots(fixed, settings, now, actor="test", snapshot_catalog=catalog) == [old.id]
    assert backups.expire_copies(fixed, settings, now, actor="test") == [copy["copy_id"]]
