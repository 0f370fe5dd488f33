"""Bounded waits on the ledger too: a write behind a transaction that holds the chain head gives up after
its lock timeout, backs off and tries again, and fails clearly (writing nothing) if the lock never frees.
No timing assertions: the holder is released by the ledger's own back-off."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from retention.ledger import Ledger, migrate
from retention.ledger.database import create_ledger_engine
from retention.ledger.transactions import LOCK_ATTEMPTS, LedgerBusy

pytestmark = pytest.mark.postgres


class Backoff:
    def __init__(self, holder: sa.Connection, release_after: int | None) -> None:
        self.holder, self.release_after, self.waits = holder, release_after, 0

    def __call__(self, seconds: float) -> None:
        self.waits += 1
        if self.release_after is not None and self.waits >= self.release_after and self.holder.in_transaction():
            self.holder.rollback()


@pytest.fixture
def chain_head_held(postgres_url: str):
    """A migrated ledger database and another transaction holding its chain head's row lock."""
    migrate(postgres_url)
    engine = sa.create_engine(postgres_url)
    holder = engine.connect()
    holder.begin()
    holder.execute(sa.text("SELECT seq FROM chain_head WHERE id = 1 FOR UPDATE"))
    yield postgres_url, holder
    holder.close()
    engine.dispose()


def test_an_append_behind_a_held_chain_head_backs_off_and_goes_through_once_it_frees(chain_head_held) -> None:
    url, holder = chain_head_held
    backoff = Backoff(holder, release_after=2)
    ledger = Ledger(create_ledger_engine(url), lock_timeout_ms=50, sleep=backoff)
    try:
        event = ledger.append("test.event", {"n": 1}, actor="test")
        assert backoff.waits == 2 and event.seq == 1
        assert ledger.verify().ok
    finally:
        ledger.close()


def test_an_append_whose_lock_never_frees_fails_clearly_and_writes_nothing(chain_head_held) -> None:
    url, holder = chain_head_held
    backoff = Backoff(holder, release_after=None)
    ledger = Ledger(create_ledger_engine(url), lock_timeout_ms=50, sleep=backoff)
    try:
        with pytest.raises(LedgerBusy, match="lock timeout"):
            ledger.append("test.event", {"n": 1}, actor="test")
        assert backoff.waits == LOCK_ATTEMPTS - 1
        holder.rollback()
        assert ledger.head()[0] == 0
    finally:
        ledger.close()
