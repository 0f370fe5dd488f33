"""The ledger says when a batch met an application lock: its outcome event carries the retries it took."""

from __future__ import annotations

import pendulum
import pytest

from retention.engine.executor import claim_and_execute
from tests.integration.test_sql_locks import Backoff, hold_row_lock, store_of
from tests.integration.test_sql_store import OLD, add_conversations, chat

pytestmark = pytest.mark.postgres


def test_a_batch_retried_behind_an_application_lock_is_recorded_with_its_retries(app_engine, ledger):
    ids = add_conversations(app_engine, [chat("acct_1", OLD)] * 10, messages_each=2)
    run_id = ledger.start_run("sweep", dry_run=False, as_of=pendulum.now("UTC"), rules_digest="0" * 64, actor="test")
    task_id = ledger.add_planned_task(run_id, account_id="acct_1", data_class="chat_transcripts",
                                      location="chat_conversations", action="delete", rule_id="chat-test")
    holder = hold_row_lock(app_engine, ids[5])
    try:
        affected = claim_and_execute(ledger, store_of(app_engine, Backoff(holder, release_after=2), lock_timeout_ms=50),
                                     task_id, actor="test")
    finally:
        holder.close()

    assert affected == 10 and ledger.task(task_id).affected_count == 10
    assert [(e.payload["affected"], e.payload["lock_retries"]) for e in ledger.run_events(run_id, "batch.outcome")] \
        == [(10, 2)]
