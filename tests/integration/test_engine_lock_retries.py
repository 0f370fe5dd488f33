"""The ledger says when a batch met an application lock: its outcome event carries the retries it took."""

from __future__ import annotations

import pendulum
import pytest
import sqlalchemy as sa

from retention.engine.executor import claim_and_execute
from retention.stores.base import BatchLocked
from tests.integration.test_sql_locks import Backoff, hold_row_lock, store_of
from tests.integration.test_sql_store import OLD, add_conversations, chat

pytestmark = pytest.mark.postgres


def planned_delete(ledger) -> tuple[str, str]:
    """A sweep run with one planned task: delete acct_1's chat conversations. (run id, task id)"""
    run_id = ledger.start_run("sweep", dry_run=False, as_of=pendulum.now("UTC"), rules_digest="0" * 64, actor="test")
    task_id = ledger.add_planned_task(run_id, account_id="acct_1", data_class="chat_transcripts",
                                      location="chat_conversations", action="delete", rule_id="chat-test")
    return run_id, task_id


def test_a_batch_retried_behind_an_application_lock_is_recorded_with_its_retries(app_engine, ledger):
    ids = add_conversations(app_engine, [chat("acct_1", OLD)] * 10, messages_each=2)
    run_id, task_id = planned_delete(ledger)
    holder = hold_row_lock(app_engine, ids[5])
    try:
        affected = claim_and_execute(ledger, store_of(app_engine, Backoff(holder, release_after=2), lock_timeout_ms=50),
                                     task_id, actor="test")
    finally:
        holder.close()

    assert affected == 10 and ledger.task(task_id).affected_count == 10
    assert [(e.payload["affected"], e.payload["lock_retries"]) for e in ledger.run_events(run_id, "batch.outcome")] \
        == [(10, 2)]


class HoldWhileLocked(Backoff):
    """The store's back-off: while the batch waits on the application's lock, counsel places a hold."""

    def __init__(self, holder, ledger):
        super().__init__(holder, release_after=1)
        self.ledger = ledger

    def __call__(self, seconds: float) -> None:
        if not self.ledger.list_holds():
            self.ledger.place_hold(account_id="acct_1", data_class=None, reason="litigation", reference="L-9",
                                   placed_by="counsel")
        super().__call__(seconds)  # the lock frees too: without the hold, the next try would delete


def test_a_hold_placed_while_a_batch_waits_on_a_lock_stops_it_before_its_next_try(app_engine, ledger):
    add_conversations(app_engine, [chat("acct_1", OLD)] * 10, messages_each=2)
    run_id, task_id = planned_delete(ledger)
    holder = hold_row_lock(app_engine, add_conversations(app_engine, [chat("acct_1", OLD)], messages_each=1)[0])
    try:
        affected = claim_and_execute(ledger, store_of(app_engine, HoldWhileLocked(holder, ledger),
                                                      lock_timeout_ms=50), task_id, actor="test")
    finally:
        holder.close()

    task = ledger.task(task_id)
    assert affected == 0 and task.status == "held" and task.affected_count == 0
    assert [e.payload["holds"] for e in ledger.run_events(run_id, "task.held")] == [[ledger.list_holds()[0].id]]
    with app_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM chat_conversations")).scalar_one() == 11


def test_a_batch_that_never_gets_its_locks_is_recorded_and_fails(app_engine, ledger):
    ids = add_conversations(app_engine, [chat("acct_1", OLD)] * 10, messages_each=2)
    run_id, task_id = planned_delete(ledger)
    holder = hold_row_lock(app_engine, ids[0])
    try:
        with pytest.raises(BatchLocked):
            claim_and_execute(ledger, store_of(app_engine, Backoff(), lock_timeout_ms=50), task_id, actor="test")
    finally:
        holder.close()
    locked = ledger.run_events(run_id, "batch.locked")
    assert [e.payload["lock_retries"] for e in locked] == [3]
    assert ledger.task(task_id).checkpoint.get("pending") is None  # nothing of it went: no recovery to count


def test_an_executor_stops_before_its_next_batch_once_its_run_is_closed(app_engine, ledger):
    """A --resume still running when a report closed the run deletes nothing more."""
    from retention.engine.executor import NotPermitted

    add_conversations(app_engine, [chat("acct_1", OLD)] * 10, messages_each=2)
    run_id, task_id = planned_delete(ledger)
    ledger.finish_run(run_id, "failed", actor="test")  # the report closed it after claiming nothing
    with pytest.raises(NotPermitted, match="failed"):
        claim_and_execute(ledger, store_of(app_engine, Backoff()), task_id, actor="test")
    with app_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM chat_conversations")).scalar_one() == 10
