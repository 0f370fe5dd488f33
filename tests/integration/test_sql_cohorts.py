"""Set-based deletion of many accounts at one SQL location, each with its own cutoff, on real PostgreSQL (the
application) and a real ledger (SQLite and PostgreSQL): exactly each account's due rows go, none of another's;
per-account counts in the ledger equal the rows that left (re-counted); a hold placed between two batches
stops its account only; a batch killed between intent and outcome is counted once on the rerun."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from retention.engine.cohorts import CohortKey, execute_cohort
from retention.ledger import Ledger
from retention.stores.base import Cohort, CohortBatch, CohortOutcome
from retention.stores.sql import SqlStore, cohorts
from tests.fixtures.sql import chat_conversations, chat_location, chat_messages, copy_rows

pytestmark = pytest.mark.postgres

BASE = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)
ACCOUNTS = [f"acct_{n:03d}" for n in range(30)]
LOCATION = "chat_conversations"
KEY = CohortKey(anchor="created_at", data_class="chat_transcripts")


def cutoff_of(account: str) -> datetime:
    return BASE + timedelta(days=int(account.removeprefix("acct_")))  # every account its own cutoff


def seed(engine: sa.Engine) -> None:
    """Per account: rows well before, exactly at and a second after its own cutoff, one at the NEXT account's
    cutoff (due for that one, not for this), one undated; two messages per conversation. Plus an account
    outside the cohort with only old rows."""
    rows = []
    for account in ACCOUNTS:
        cutoff = cutoff_of(account)
        for created in (cutoff - timedelta(days=400), cutoff - timedelta(days=3), cutoff, cutoff + SECOND,
                        cutoff + timedelta(days=1), None):
            rows += [(account, created, None, "v@example.org", "203.0.113.7", "billing")] * 3
    rows += [("acct_outside", BASE - timedelta(days=900), None, "v@example.org", "203.0.113.7", "billing")] * 5
    copy_rows(engine, "chat_conversations",
              ("account_id", "created_at", "last_message_at", "visitor_email", "visitor_ip", "topic"), rows)
    with engine.connect() as conn:
        ids = list(conn.execute(sa.select(chat_conversations.c.id)).scalars())
    copy_rows(engine, "chat_messages", ("conversation_id", "body", "created_at"),
              ((cid, "hello", BASE) for cid in ids for _ in range(2)))


def expected_due(engine: sa.Engine) -> Counter:
    """Re-counted from the table: each account's rows at or before its own cutoff."""
    due: Counter = Counter()
    with engine.connect() as conn:
        query = sa.select(chat_conversations.c.account_id, chat_conversations.c.created_at)
        for account, created in conn.execute(query):
            if account in ACCOUNTS and created is not None and created <= cutoff_of(account):
                due[account] += 1
    return due


def per_account(engine: sa.Engine) -> Counter:
    with engine.connect() as conn:
        return Counter(dict(conn.execute(sa.select(chat_conversations.c.account_id, sa.func.count())
                                         .group_by(chat_conversations.c.account_id)).all()))


def planned(ledger: Ledger) -> tuple[str, list]:
    run_id = ledger.start_run("sweep", dry_run=False, as_of=BASE, rules_digest="0" * 64, actor="test")
    ledger.add_planned_tasks(run_id, [
        {"account_id": a, "data_class": KEY.data_class, "location": LOCATION, "action": "delete", "rule_id": "r1",
         "anchor": KEY.anchor, "cutoff": cutoff_of(a)} for a in ACCOUNTS])
    return run_id, ledger.tasks(run_id, location=LOCATION)


def small_batches(app_engine: sa.Engine) -> SqlStore:
    # 10 rows a batch, sizes kept: many batches, each holding rows of several accounts
    return SqlStore(LOCATION, chat_location(), app_engine, initial_batch_size=10, min_batch_size=10,
                    max_batch_size=10)


def execute(ledger: Ledger, store, run_id: str, tasks: list) -> int:
    return execute_cohort(ledger, store, run_id, LOCATION, KEY, tasks, actor="test", check_run=lambda: None)


@pytest.mark.parametrize("few_cutoffs", [0, 100], ids=["joined-to-the-cutoffs", "a-filter-per-cutoff"])
def test_each_account_loses_exactly_its_own_due_rows_and_the_ledger_counts_them(app_engine, ledger, few_cutoffs,
                                                                                  monkeypatch) -> None:
    monkeypatch.setattr(cohorts, "FEW_CUTOFFS", few_cutoffs)  # both ways of matching each account's cutoff
    seed(app_engine)
    due, before = expected_due(app_engine), per_account(app_engine)
    run_id, tasks = planned(ledger)

    affected = execute(ledger, small_batches(app_engine), run_id, tasks)

    after = per_account(app_engine)
    assert {a: before[a] - after[a] for a in ACCOUNTS} == {a: due[a] for a in ACCOUNTS}
    assert after["acct_outside"] == before["acct_outside"] == 5  # old, but not in the cohort
    assert expected_due(app_engine) == Counter()  # nothing due left, and every younger or undated row stays
    counted = {t.account_id: t.affected_count for t in ledger.tasks(run_id)}
    assert counted == {a: due[a] for a in ACCOUNTS} and affected == sum(due.values())
    assert {t.status for t in ledger.tasks(run_id)} == {"done"}
    with app_engine.connect() as conn:  # children went with their conversations, and only theirs
        orphans = conn.execute(sa.select(sa.func.count()).select_from(chat_messages).where(
            chat_messages.c.conversation_id.not_in(sa.select(chat_conversations.c.id)))).scalar_one()
        messages = conn.execute(sa.select(sa.func.count()).select_from(chat_messages)).scalar_one()
    assert orphans == 0 and messages == 2 * sum(after.values())
    intents = ledger.run_events(run_id, "batch.intent")
    assert len(intents) >= 10 and len(ledger.run_events(run_id, "batch.outcome")) == len(intents)
    assert all("counts" not in e.payload and "account_id" not in e.payload for e in intents)  # counts stay off-chain
    done = ledger.run_events(run_id, "cohort.done")
    assert [(e.payload["tasks"], e.payload["affected"]) for e in done] == [(len(ACCOUNTS), sum(due.values()))]
    assert ledger.verify().ok


class HoldAfterFirstBatch:
    """The real store; a legal hold on one account of the cohort is placed right after the first batch."""

    def __init__(self, store: SqlStore, ledger: Ledger, account: str) -> None:
        self.store, self.ledger, self.account = store, ledger, account

    def cohort_range(self, cohort: Cohort, after: str | None) -> CohortBatch | None:
        return self.store.cohort_range(cohort, after)

    def cohort_count(self, cohort: Cohort, after: str | None, upper: str) -> dict[str, int]:
        return self.store.cohort_count(cohort, after, upper)

    def cohort_delete(self, batch: CohortBatch) -> CohortOutcome:
        outcome = self.store.cohort_delete(batch)
        if not self.ledger.list_holds():
            self.ledger.place_hold(account_id=self.account, data_class=None, reason="litigation",
                                   reference="LEGAL-18", placed_by="counsel")
        return outcome


def test_a_hold_placed_between_two_batches_stops_that_account_only(app_engine, ledger) -> None:
    seed(app_engine)
    due, before = expected_due(app_engine), per_account(app_engine)
    run_id, tasks = planned(ledger)
    held = "acct_029"  # its rows come late in key order: the first batch does not reach them

    execute(ledger, HoldAfterFirstBatch(small_batches(app_engine), ledger, held), run_id, tasks)

    after = per_account(app_engine)
    assert after[held] == before[held]  # nothing of the held account went after the hold
    statuses = {t.account_id: t.status for t in ledger.tasks(run_id)}
    assert statuses[held] == "held" and {s for a, s in statuses.items() if a != held} == {"done"}
    others = [a for a in ACCOUNTS if a != held]
    assert {a: before[a] - after[a] for a in others} == {a: due[a] for a in others}  # the others finished
    counted = {t.account_id: t.affected_count for t in ledger.tasks(run_id)}
    assert counted == {a: before[a] - after[a] for a in ACCOUNTS}
    assert [e.payload["account_id"] for e in ledger.run_events(run_id, "task.held")] == [held]


class Killed(BaseException):
    """Stands for the process dying right after the DELETE committed, before the outcome is written."""


class DieAfterThirdDelete(HoldAfterFirstBatch):
    def __init__(self, store: SqlStore) -> None:
        self.store, self.deletes = store, 0

    def cohort_delete(self, batch: CohortBatch) -> CohortOutcome:
        outcome = self.store.cohort_delete(batch)
        self.deletes += 1
        if self.deletes == 3:
            raise Killed
        return outcome


def test_a_batch_deleted_but_not_recorded_is_counted_once_per_account_on_the_rerun(app_engine, ledger) -> None:
    seed(app_engine)
    due, before = expected_due(app_engine), per_account(app_engine)
    run_id, tasks = planned(ledger)
    with pytest.raises(Killed):
        execute(ledger, DieAfterThirdDelete(small_batches(app_engine)), run_id, tasks)
    assert len(ledger.run_events(run_id, "batch.intent")) == len(ledger.run_events(run_id, "batch.outcome")) + 1
    in_flight = ledger.run_events(run_id, "batch.intent")[-1].payload["count"]  # the third batch's rows

    execute(ledger, small_batches(app_engine), run_id, ledger.tasks(run_id, location=LOCATION))

    after = per_account(app_engine)
    counted = {t.account_id: t.affected_count for t in ledger.tasks(run_id)}
    assert counted == {a: before[a] - after[a] for a in ACCOUNTS} == {a: due[a] for a in ACCOUNTS}
    recovered = ledger.run_events(run_id, "batch.recovered")
    assert in_flight > 0 and len(recovered) == 1
    assert (recovered[0].payload["affected"], recovered[0].payload["remaining"]) == (in_flight, 0)
    assert {t.status for t in ledger.tasks(run_id)} == {"done"}
