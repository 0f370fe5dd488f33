"""SqlStore.tally on a real PostgreSQL: for every account at once it gives what ``count`` gives per account
(totals, due counts under per-account cutoffs, rows still to anonymize), on timestamptz, naive timestamp and
date anchors, text, integer and uuid account columns, in a number of statements that does not grow with the
number of accounts."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retention.stores.base import Due, Selector, Tally
from retention.stores.sql import SqlStore
from tests.fixtures.sql import chat_location, copy_rows
from tests.fixtures.tally import per_account, statements

pytestmark = pytest.mark.postgres

CUTOFF = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
HASHED = "a" * 64  # what an anonymized hash column holds
ACCOUNTS = ["acct_1", "acct_10", "acct_2", "other"]  # acct_1 is a prefix of acct_10
CONVERSATION = ("account_id", "created_at", "last_message_at", "visitor_email", "visitor_ip", "topic")


def chat_store(engine: sa.Engine, **spec) -> SqlStore:
    return SqlStore("chat_conversations", chat_location(**spec), engine)


offsets = st.one_of(st.none(), st.sampled_from([-86_400 * 40, -86_400, -1, 0, 1, 86_400, 86_400 * 40]))
row = st.tuples(st.sampled_from(ACCOUNTS + ["stranger"]), offsets, offsets, st.booleans(), st.booleans())
due_for = st.tuples(st.sampled_from([None, "created_at", "last_activity_at"]),
                    st.sampled_from([-86_400 * 10, -1, 0, 1, 86_400 * 10]), st.booleans())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(row, max_size=40), asked=st.sets(st.sampled_from(ACCOUNTS)),
       wanted=st.dictionaries(st.sampled_from(ACCOUNTS), due_for))
def test_tally_agrees_with_count_per_account(app_engine, rows, asked, wanted):
    with app_engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE chat_messages, chat_conversations RESTART IDENTITY"))
    def when(seconds: int | None) -> datetime | None:
        return None if seconds is None else CUTOFF + timedelta(seconds=seconds)

    copy_rows(app_engine, "chat_conversations", CONVERSATION,
              [(account, when(created), when(last), None if cleared else "v@example.org",
                HASHED if cleared or hashed else "203.0.113.7", "billing")
               for account, created, last, cleared, hashed in rows])
    store = chat_store(app_engine)
    accounts = sorted(asked)
    dues = [Due(Selector(a, anchor, CUTOFF + timedelta(seconds=shift)) if anchor else Selector(a), pending)
            for a, (anchor, shift, pending) in wanted.items() if a in asked]

    assert store.tally(accounts, dues) == per_account(store, accounts, dues)


def test_each_account_is_counted_against_its_own_cutoff_and_strangers_are_not_counted(app_engine):
    copy_rows(app_engine, "chat_conversations", CONVERSATION, [
        ("acct_1", CUTOFF - timedelta(days=2), None, None, None, "t"),
        ("acct_1", CUTOFF, None, None, None, "t"),
        ("acct_10", CUTOFF - timedelta(days=2), None, None, None, "t"),
        ("acct_10", CUTOFF, None, None, None, "t"),
        ("acct_10", None, None, None, None, "t"),  # undated: in the total, never due under a cutoff
        ("stranger", CUTOFF - timedelta(days=9), None, None, None, "t"),
    ])
    store = chat_store(app_engine)
    dues = [Due(Selector("acct_1", "created_at", CUTOFF - timedelta(days=1))),
            Due(Selector("acct_10", "created_at", CUTOFF))]

    assert store.tally(["acct_1", "acct_10", "acct_2"], dues) == {"acct_1": Tally(2, 1), "acct_10": Tally(3, 2)}
    assert store.tally(["acct_1"]) == {"acct_1": Tally(2, 0)}
    assert store.tally([]) == {}


def test_a_due_for_an_account_not_asked_for_is_refused(app_engine):
    with pytest.raises(ValueError, match="not asked for"):
        chat_store(app_engine).tally(["acct_1"], [Due(Selector("acct_2"))])


def test_a_naive_timestamp_column_is_read_as_utc_and_a_date_column_by_whole_days(app_engine):
    with app_engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE legacy (id bigint PRIMARY KEY, account_id text NOT NULL, "
                             "logged_at timestamp without time zone, day date)"))
        conn.execute(sa.text("INSERT INTO legacy VALUES (1, 'a', '2025-03-01 12:00:00', '2025-02-28'), "
                             "(2, 'a', '2025-03-01 12:00:01', '2025-03-01'), (3, 'b', '2025-03-01 11:00:00', "
                             "'2025-03-02'), (4, 'b', NULL, NULL)"))
    naive = SqlStore("legacy", chat_location(table="legacy", children=[], anonymize=None,
                                             timestamps={"created_at": "logged_at", "last_activity_at": "day"}),
                     app_engine)
    third = datetime(2025, 3, 3, tzinfo=UTC)
    dues = [Due(Selector("a", "created_at", CUTOFF)), Due(Selector("b", "last_activity_at", third))]

    assert naive.tally(["a", "b"], dues) == per_account(naive, ["a", "b"], dues) == {"a": Tally(2, 1), "b": Tally(2, 1)}
    by_day = [Due(Selector("a", "last_activity_at", CUTOFF)), Due(Selector("b", "last_activity_at", CUTOFF))]
    assert naive.tally(["a", "b"], by_day) == per_account(naive, ["a", "b"], by_day) == {"a": Tally(2, 1),
                                                                                       "b": Tally(2, 0)}


@pytest.mark.parametrize("account_type, ids", [
    ("bigint", ["7", "42", "9"]),
    ("uuid", [str(uuid.UUID(int=7)), str(uuid.UUID(int=42)), str(uuid.UUID(int=9))]),
])
def test_integer_and_uuid_account_columns_give_counts_back_under_the_ids_asked(app_engine, account_type, ids):
    with app_engine.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE typed (id bigint PRIMARY KEY, account_id {account_type} NOT NULL, "
                             "created_at timestamptz)"))
        conn.execute(sa.text("INSERT INTO typed VALUES (1, :a, :old), (2, :a, :young), (3, :b, :old)"),
                     {"a": ids[0], "b": ids[1], "old": CUTOFF - timedelta(days=1), "young": CUTOFF})
    store = SqlStore("typed", chat_location(table="typed", timestamps={"created_at": "created_at"},
                                            children=[], anonymize=None), app_engine)
    dues = [Due(Selector(ids[0], "created_at", CUTOFF - timedelta(hours=1))), Due(Selector(ids[1]))]

    assert store.tally(ids, dues) == {ids[0]: Tally(2, 1), ids[1]: Tally(1, 1)}


@pytest.mark.parametrize("n", [10, 200])
def test_tally_sends_the_same_statements_for_10_and_for_200_accounts(app_engine, n):
    accounts = [f"acct_{i}" for i in range(n)]
    copy_rows(app_engine, "chat_conversations", CONVERSATION,
              [(a, CUTOFF - timedelta(days=d), None, "v@example.org", "203.0.113.7", "t")
               for a in accounts for d in (0, 10, 100)])
    store = chat_store(app_engine)
    dues = [Due(Selector(a, "created_at", CUTOFF - timedelta(days=i % 50)), pending_anonymize=i % 3 == 0)
            for i, a in enumerate(accounts)]
    with statements(app_engine) as sent:
        tallied = store.tally(accounts, dues)

    assert len(sent) == 3  # totals; due by created_at; due by created_at still to anonymize
    assert tallied == per_account(store, accounts, dues)
