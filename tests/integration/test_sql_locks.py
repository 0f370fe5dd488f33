"""Short locks, bounded waits: every destructive transaction on the application database runs with
``SET LOCAL lock_timeout`` and ``statement_timeout``. A batch behind an application's row lock gives up
fast, rolls back (holding none of its other row locks), backs off and retries a bounded number of
times; the outcome says how many retries it needed. All on the real PostgreSQL server; no timing
assertions: the lock is released by the store's own back-off callback, and the settings are read
inside the transaction by a trigger."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from retention.rules.inventory import DEFAULT_LOCK_TIMEOUT_MS, DEFAULT_STATEMENT_TIMEOUT_MS
from retention.stores.base import BatchLocked, Selector
from retention.stores.sql import SqlStore
from tests.fixtures.sql import chat_conversations, chat_location, chat_messages
from tests.integration.test_sql_store import OLD, add_conversations, chat

pytestmark = pytest.mark.postgres

ACCOUNT = Selector("acct_1")


class Backoff:
    """The store's ``sleep``: records each back-off and, from the ``release_after``-th on, ends the
    application transaction holding the lock (the condition is the retry itself, not elapsed time)."""

    def __init__(self, holder: sa.Connection | None = None, release_after: int = 1) -> None:
        self.holder = holder
        self.release_after = release_after
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self.holder is not None and len(self.waits) >= self.release_after and self.holder.in_transaction():
            self.holder.rollback()


def hold_row_lock(engine: sa.Engine, row_id: int) -> sa.Connection:
    """An application transaction in another connection holding the row lock of one conversation."""
    holder = engine.connect()
    holder.begin()
    holder.execute(sa.select(chat_conversations.c.id).where(chat_conversations.c.id == row_id).with_for_update())
    return holder


def store_of(engine: sa.Engine, backoff: Backoff, **spec) -> SqlStore:
    return SqlStore("chat_conversations", chat_location(**spec), engine, sleep=backoff, max_lock_retries=3)


def count(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def test_a_batch_behind_an_application_row_lock_retries_and_succeeds_once_it_is_released(app_engine):
    ids = add_conversations(app_engine, [chat("acct_1", OLD)] * 10, messages_each=2)
    holder = hold_row_lock(app_engine, ids[5])  # one row in the middle of the batch
    backoff = Backoff(holder, release_after=2)  # released only after the second lock timeout
    store = store_of(app_engine, backoff, lock_timeout_ms=50)
    try:
        outcomes = [store.delete(batch) for batch in store.batches(ACCOUNT)]
    finally:
        holder.close()

    assert [(o.affected, o.child_rows, o.lock_retries) for o in outcomes] == [(10, 20, 2)]
    assert len(backoff.waits) == 2  # backed off once per lock timeout, then the batch went through
    assert count(app_engine, chat_conversations) == count(app_engine, chat_messages) == 0


def test_a_lock_never_released_fails_clearly_after_bounded_retries_and_deletes_nothing(app_engine):
    ids = add_conversations(app_engine, [chat("acct_1", OLD)] * 10, messages_each=2)
    holder = hold_row_lock(app_engine, ids[-1])
    backoff = Backoff()  # never releases
    store = store_of(app_engine, backoff, lock_timeout_ms=50)
    try:
        batch = next(iter(store.batches(ACCOUNT)))
        with pytest.raises(BatchLocked) as refused:
            store.delete(batch)
    finally:
        holder.close()

    message = str(refused.value)
    assert "location chat_conversations" in message and "lock_timeout 50 ms" in message
    assert "4 attempts" in message and "nothing of the batch was deleted" in message
    assert refused.value.retries == 3 and len(backoff.waits) == 3  # bounded: max_lock_retries, no more
    # The failed attempts rolled back whole: the children deleted first are back, nothing was counted.
    assert (count(app_engine, chat_conversations), count(app_engine, chat_messages)) == (10, 20)


SEEN = """
CREATE TABLE seen_settings (operation text, lock_timeout text, statement_timeout text);
CREATE FUNCTION record_settings() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO seen_settings VALUES (TG_OP, current_setting('lock_timeout'), current_setting('statement_timeout'));
  RETURN NULL;
END $$;
CREATE TRIGGER record_settings BEFORE DELETE OR UPDATE ON chat_conversations
  FOR EACH STATEMENT EXECUTE FUNCTION record_settings();
"""


def seen(engine: sa.Engine) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(sa.text("SELECT * FROM seen_settings"))]


@pytest.mark.parametrize(("spec", "expected"), [
    ({}, (f"{DEFAULT_LOCK_TIMEOUT_MS // 1000}s", f"{DEFAULT_STATEMENT_TIMEOUT_MS // 1000}s")),
    ({"lock_timeout_ms": 1500, "statement_timeout_ms": 20_000}, ("1500ms", "20s")),
])
def test_the_timeouts_are_in_force_inside_each_destructive_transaction_and_only_there(app_engine, spec, expected):
    add_conversations(app_engine, [chat("acct_1", OLD)] * 3)
    with app_engine.begin() as conn:
        conn.execute(sa.text(SEEN))
    store = store_of(app_engine, Backoff(), **spec)

    for batch in store.batches(ACCOUNT, pending_anonymize=True):
        store.anonymize(batch)
    for batch in store.batches(ACCOUNT):
        store.delete(batch)

    assert seen(app_engine) == [("UPDATE", *expected), ("DELETE", *expected)]
    with app_engine.connect() as conn:  # SET LOCAL: the pooled connection is back to the server's defaults
        assert conn.execute(sa.text("SELECT current_setting('lock_timeout'), "
                                    "current_setting('statement_timeout')")).one() == ("0", "0")


def test_a_statement_over_its_timeout_fails_clearly_and_deletes_nothing(app_engine):
    add_conversations(app_engine, [chat("acct_1", OLD)] * 3, messages_each=1)
    with app_engine.begin() as conn:  # a statement that would run far past its timeout
        conn.execute(sa.text("CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$ "
                             "BEGIN PERFORM pg_sleep(60); RETURN NULL; END $$; "
                             "CREATE TRIGGER slow BEFORE DELETE ON chat_conversations "
                             "FOR EACH STATEMENT EXECUTE FUNCTION slow();"))
    backoff = Backoff()
    store = store_of(app_engine, backoff, lock_timeout_ms=100, statement_timeout_ms=200)

    batch = next(iter(store.batches(ACCOUNT)))
    with pytest.raises(RuntimeError, match=r"location chat_conversations: .*statement_timeout 200 ms.*nothing of the "
                                           r"batch was deleted"):
        store.delete(batch)
    assert backoff.waits == []  # a slow statement is not retried: the same batch would be as slow
    assert (count(app_engine, chat_conversations), count(app_engine, chat_messages)) == (3, 3)


@pytest.mark.parametrize("spec", [{"lock_timeout_ms": 0}, {"statement_timeout_ms": 0},
                                  {"lock_timeout_ms": 5_000, "statement_timeout_ms": 5_000}])
def test_timeouts_must_be_positive_and_the_lock_wait_shorter_than_a_statement(spec):
    with pytest.raises(ValidationError):
        chat_location(**spec)
