"""SqlStore on a real PostgreSQL: exact selection around the cutoff, children before parents, anonymize
and its reruns, resumable batches, crash-recovery counts, refusal of bad specs, adaptive batch sizes,
export. Every store here is built exactly as in production: a spec and an engine."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.exc import IntegrityError

from retention.stores.base import PendingBatch, Selector
from retention.stores.sql import BatchSizer, SqlOutcome, SqlStore
from tests.fixtures.sql import chat_conversations, chat_location, chat_messages, copy_rows

pytestmark = pytest.mark.postgres

CUTOFF = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)
OLD = CUTOFF - timedelta(days=30)
YOUNG = CUTOFF + timedelta(days=30)
CONVERSATION = ("account_id", "created_at", "last_message_at", "visitor_email", "visitor_ip", "topic")
HEX64 = re.compile(r"[0-9a-f]{64}")


def old_chats(account: str = "acct_1") -> Selector:
    return Selector(account, "created_at", CUTOFF)


def add_conversations(engine: sa.Engine, rows: list[tuple], messages_each: int = 0) -> list[int]:
    """Insert conversations (CONVERSATION column order) and ``messages_each`` messages per conversation;
    returns the new conversation ids in insertion order."""
    with engine.connect() as conn:
        start = conn.execute(sa.select(sa.func.coalesce(sa.func.max(chat_conversations.c.id), 0))).scalar_one()
    copy_rows(engine, "chat_conversations", CONVERSATION, rows)
    with engine.connect() as conn:
        ids = list(conn.execute(sa.select(chat_conversations.c.id).where(chat_conversations.c.id > start)
                                .order_by(chat_conversations.c.id)).scalars())
    if messages_each:
        copy_rows(engine, "chat_messages", ("conversation_id", "body", "created_at"),
                  ((cid, f"message {m}", OLD) for cid in ids for m in range(messages_each)))
    return ids


def chat(account: str, created_at: datetime | None, *, last: datetime | None = None,
         email: str | None = "v@example.org", ip: str | None = "203.0.113.7", topic: str = "billing") -> tuple:
    return (account, created_at, last, email, ip, topic)


def chat_store(engine: sa.Engine, *, spec: dict | None = None, **sizing) -> SqlStore:
    return SqlStore("chat_conversations", chat_location(**(spec or {})), engine, **sizing)


def run_deletion(store: SqlStore, selector: Selector, after: str | None = None) -> tuple[int, int, list[PendingBatch]]:
    """Drive the store as the engine does; returns (rows deleted, child rows deleted, batches)."""
    affected = children = 0
    batches = []
    for batch in store.batches(selector, after=after):
        outcome = store.delete(batch)
        affected, children = affected + outcome.affected, children + outcome.child_rows
        batches.append(batch)
    return affected, children, batches


def rows_of(engine: sa.Engine, table: sa.Table) -> dict:
    with engine.connect() as conn:
        return {row.id: row for row in conn.execute(sa.select(table))}


def ids_of(engine: sa.Engine, table: sa.Table = chat_conversations) -> set:
    return set(rows_of(engine, table))


# -- selection around the cutoff ------------------------------------------------------------------

def test_a_record_at_exactly_the_cutoff_goes_and_one_a_second_younger_survives(app_engine):
    older, exact, second, micro, undated = add_conversations(app_engine, [
        chat("acct_1", CUTOFF - SECOND), chat("acct_1", CUTOFF), chat("acct_1", CUTOFF + SECOND),
        chat("acct_1", CUTOFF + timedelta(microseconds=1)), chat("acct_1", None)])
    store = chat_store(app_engine)

    assert store.count(old_chats()) == 2
    affected, _, _ = run_deletion(store, old_chats())

    assert affected == 2
    assert ids_of(app_engine) == {second, micro, undated}
    assert store.verify(old_chats()).clean


def test_a_record_without_a_timestamp_is_never_selected_by_a_cutoff(app_engine):
    undated = add_conversations(app_engine, [chat("acct_1", None, last=None)] * 3)
    store = chat_store(app_engine)
    far_future = datetime(2999, 1, 1, tzinfo=UTC)

    for anchor in ("created_at", "last_activity_at"):
        assert store.count(Selector("acct_1", anchor, far_future)) == 0
        assert run_deletion(store, Selector("acct_1", anchor, far_future))[0] == 0
    assert ids_of(app_engine) == set(undated)


def test_other_accounts_are_untouched(app_engine):
    mine = add_conversations(app_engine, [chat("acct_1", OLD)] * 5, messages_each=2)
    theirs = add_conversations(app_engine, [chat("acct_2", OLD), chat("acct_10", OLD), chat("ACCT_1", OLD),
                                            chat("acct_1 ", OLD)], messages_each=2)
    store = chat_store(app_engine)

    affected, children, _ = run_deletion(store, old_chats())

    assert (affected, children) == (len(mine), 2 * len(mine))
    assert ids_of(app_engine) == set(theirs)
    assert {m.conversation_id for m in rows_of(app_engine, chat_messages).values()} == set(theirs)


def test_the_last_activity_anchor_selects_on_its_own_column(app_engine):
    quiet, active, never = add_conversations(app_engine, [
        chat("acct_1", YOUNG, last=OLD), chat("acct_1", OLD, last=YOUNG), chat("acct_1", OLD, last=None)])
    store = chat_store(app_engine)

    affected, _, _ = run_deletion(store, Selector("acct_1", "last_activity_at", CUTOFF))

    assert affected == 1
    assert ids_of(app_engine) == {active, never}


def test_a_selector_without_an_anchor_takes_every_record_of_the_account_even_undated(app_engine):
    add_conversations(app_engine, [chat("acct_1", OLD), chat("acct_1", YOUNG), chat("acct_1", None)], messages_each=1)
    kept = add_conversations(app_engine, [chat("acct_2", OLD)])
    store = chat_store(app_engine)

    affected, children, _ = run_deletion(store, Selector("acct_1"))

    assert (affected, children) == (3, 3)
    assert ids_of(app_engine) == set(kept)


def test_an_anchor_the_spec_maps_no_column_to_is_refused(app_engine):
    add_conversations(app_engine, [chat("acct_1", OLD, last=OLD)])
    store = chat_store(app_engine, spec={"timestamps": {"created_at": "created_at"}})
    selector = Selector("acct_1", "last_activity_at", CUTOFF)

    with pytest.raises(ValueError, match="chat_conversations.*last_activity_at"):
        store.count(selector)
    with pytest.raises(ValueError, match="last_activity_at"):
        next(store.batches(selector))
    assert store.count(Selector("acct_1")) == 1


def test_a_naive_timestamp_column_is_read_as_utc_whatever_the_session_time_zone(app_engine):
    new_york = sa.create_engine(app_engine.url, connect_args={"options": "-c timezone=America/New_York"})
    with app_engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE legacy_events (id bigint PRIMARY KEY, account_id text NOT NULL, "
                             "logged_at timestamp without time zone)"))
        conn.execute(sa.text("INSERT INTO legacy_events VALUES (1, 'acct_1', '2025-03-01 12:00:00'), "
                             "(2, 'acct_1', '2025-03-01 12:00:01')"))
    store = SqlStore("legacy_events", chat_location(table="legacy_events", timestamps={"created_at": "logged_at"},
                                                    children=[], anonymize=None), new_york)
    paris_cutoff = CUTOFF.astimezone(timezone(timedelta(hours=1)))  # the same instant, written in +01:00

    assert run_deletion(store, Selector("acct_1", "created_at", paris_cutoff))[0] == 1
    with app_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT id FROM legacy_events")).scalars().all() == [2]
    new_york.dispose()


def test_a_date_column_selects_only_days_that_ended_by_the_cutoff(app_engine):
    with app_engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE daily_stats (id bigint PRIMARY KEY, account_id text NOT NULL, day date)"))
        conn.execute(sa.text("INSERT INTO daily_stats VALUES (1, 'acct_1', '2025-02-28'), (2, 'acct_1', '2025-03-01'), "
                             "(3, 'acct_1', '2025-03-02')"))
    store = SqlStore("daily_stats", chat_location(table="daily_stats", timestamps={"created_at": "day"},
                                                  children=[], anonymize=None), app_engine)

    assert store.count(Selector("acct_1", "created_at", CUTOFF)) == 1  # 1 March 12:00: that day is not over
    assert store.count(Selector("acct_1", "created_at", datetime(2025, 3, 2, tzinfo=UTC))) == 2


def test_a_cursor_that_is_not_a_key_of_the_table_is_refused(app_engine):
    add_conversations(app_engine, [chat("acct_1", OLD)])
    store = chat_store(app_engine)

    with pytest.raises(ValueError, match="cursor for chat_conversations.id must be an integer"):
        next(store.batches(old_chats(), after="not-a-number"))


# -- children -----------------------------------------------------------------------------------

def test_messages_go_before_their_conversation_under_a_restrict_foreign_key(app_engine):
    doomed = add_conversations(app_engine, [chat("acct_1", OLD)] * 4, messages_each=3)
    kept = add_conversations(app_engine, [chat("acct_1", YOUNG)] * 2, messages_each=3)
    with pytest.raises(IntegrityError), app_engine.begin() as conn:  # the wrong order fails loudly
        conn.execute(sa.delete(chat_conversations).where(chat_conversations.c.id == doomed[0]))
    store = chat_store(app_engine)
    assert store.verify(old_chats()).children == {"chat_messages": 12}

    [batch] = list(store.batches(old_chats()))
    outcome = store.delete(batch)

    assert isinstance(outcome, SqlOutcome)
    assert outcome.affected == 4 and outcome.children == {"chat_messages": 12} and outcome.child_rows == 12
    assert ids_of(app_engine) == set(kept)
    assert {m.conversation_id for m in rows_of(app_engine, chat_messages).values()} == set(kept)
    residue = store.verify(old_chats())
    assert residue.clean and residue.remaining == 0 and residue.children == {"chat_messages": 0}


# -- batches, resume and counts -------------------------------------------------------------------

def test_listing_batches_deletes_nothing(app_engine):
    add_conversations(app_engine, [chat("acct_1", OLD)] * 30, messages_each=1)
    store = chat_store(app_engine, initial_batch_size=7, min_batch_size=1)

    batches = list(store.batches(old_chats()))

    assert [b.count for b in batches] == [7, 7, 7, 7, 2]
    assert [b.after for b in batches[1:]] == [b.upper for b in batches[:-1]]
    assert store.count(old_chats()) == 30 and len(rows_of(app_engine, chat_messages)) == 30


def _int_keys(engine: sa.Engine, matching: int, other: int) -> tuple[SqlStore, set, set]:
    accounts = ["acct_1"] * matching + ["acct_2"] * other
    accounts.sort(key=lambda a: hash((a, len(accounts))) % 7)  # interleaved, deterministically
    ids = add_conversations(engine, [chat(a, OLD) for a in accounts])
    mine = {i for i, a in zip(ids, accounts, strict=True) if a == "acct_1"}
    return chat_store(engine, initial_batch_size=7, min_batch_size=1), mine, set(ids) - mine


def _uuid_keys(engine: sa.Engine, matching: int, other: int) -> tuple[SqlStore, set, set]:
    mine = {uuid.uuid4() for _ in range(matching)}
    others = {uuid.uuid4() for _ in range(other)}
    copy_rows(engine, "visitor_sessions", ("id", "account_id", "started_at", "ip"),
              [(k, "acct_1", OLD, "198.51.100.1") for k in mine] + [(k, "acct_2", OLD, None) for k in others])
    spec = chat_location(table="visitor_sessions", timestamps={"created_at": "started_at"}, children=[],
                         anonymize={"set_null": ["ip"]})
    return SqlStore("visitor_sessions", spec, engine, initial_batch_size=7, min_batch_size=1), mine, others


def _text_keys(engine: sa.Engine, matching: int, other: int) -> tuple[SqlStore, set, set]:
    words = ["Zoë", "alice", "Bob", "bob", "b0b", "éclair", "a b", "a-b", "ab", "A", "z", "10", "9", "_x", "ÿ"]
    keys = [f"{w}{i}" for i in range(3) for w in words][: matching + other]
    mine, others = set(keys[::2][:matching]), set(keys) - set(keys[::2][:matching])
    copy_rows(engine, "contacts", ("handle", "account_id", "created_at", "email"),
              [(k, "acct_1" if k in mine else "acct_2", OLD, "c@example.org") for k in keys])
    spec = chat_location(table="contacts", key_column="handle", timestamps={"created_at": "created_at"},
                         children=[], anonymize={"set_null": ["email"]})
    return SqlStore("contacts", spec, engine, initial_batch_size=7, min_batch_size=1), mine, others


@pytest.mark.parametrize("make", [_int_keys, _uuid_keys, _text_keys], ids=["bigint", "uuid", "text"])
def test_resuming_from_a_batch_upper_neither_repeats_nor_skips(app_engine, make):
    store, mine, others = make(app_engine, 23, 20)
    table = store.table
    key = store.spec.key_column
    all_keys = {str(k) for k in mine | others}

    first = store.batches(old_chats())
    done = [next(first), next(first)]
    for batch in done:
        store.delete(batch)
    first.close()  # the worker dies here; a new process resumes from the checkpoint
    resumed = SqlStore(store.location_id, store.spec, app_engine, initial_batch_size=5, min_batch_size=1)
    affected, _, rest = run_deletion(resumed, old_chats(), after=done[-1].upper)

    batches = done + rest
    assert [b.after for b in batches] == [None] + [b.upper for b in batches[:-1]]
    assert all(b.upper in all_keys for b in batches)  # cursors are the keys themselves, as text
    assert sum(b.count for b in batches) == len(mine) == sum(b.count for b in done) + affected
    with app_engine.connect() as conn:
        assert set(conn.execute(sa.select(table.c[key])).scalars()) == others
    assert resumed.verify(old_chats()).clean


def test_count_within_a_batch_range_is_exact_for_crash_recovery(app_engine):
    rows = [chat("acct_1", OLD if i % 4 else YOUNG) if i % 5 else chat("acct_2", OLD) for i in range(40)]
    ids = add_conversations(app_engine, rows)
    store = chat_store(app_engine, initial_batch_size=10, min_batch_size=1)
    batches = list(store.batches(old_chats()))
    batch = batches[1]
    in_range = [i for i, r in zip(ids, rows, strict=True) if int(batch.after) < i <= int(batch.upper)]

    assert store.count(old_chats(), batch.after, batch.upper) == batch.count == 10
    assert sum(store.count(old_chats(), b.after, b.upper) for b in batches) == store.count(old_chats())
    assert store.count(Selector("acct_2"), batch.after, batch.upper) == sum(
        1 for i, r in zip(ids, rows, strict=True) if i in in_range and r[0] == "acct_2")

    # Rows vanish from the range by other means (say the application deleted two): the count says so.
    with app_engine.begin() as conn:
        conn.execute(sa.delete(chat_conversations).where(chat_conversations.c.id.in_(
            [i for i, r in zip(ids, rows, strict=True) if i in in_range and r[0] == "acct_1" and r[1] == OLD][:2])))
    assert store.count(old_chats(), batch.after, batch.upper) == 8
    assert store.delete(batch).affected == 8
    assert store.count(old_chats(), batch.after, batch.upper) == 0
    assert store.delete(batch).affected == 0  # a replayed batch deletes nothing more


# -- anonymize ----------------------------------------------------------------------------------

def test_anonymize_clears_and_hashes_only_the_selected_rows_and_keeps_every_other_column(app_engine):
    ids = add_conversations(app_engine, [
        chat("acct_1", OLD, email="a@example.org", ip="203.0.113.1", topic="sales"),
        chat("acct_1", OLD, email="b@example.org", ip=None),
        chat("acct_1", OLD, email=None, ip="203.0.113.3"),
        chat("acct_1", YOUNG, email="d@example.org", ip="203.0.113.4"),
        chat("acct_2", OLD, email="e@example.org", ip="203.0.113.5")], messages_each=1)
    before = rows_of(app_engine, chat_conversations)
    store = chat_store(app_engine)

    outcome = sum(store.anonymize(b).affected for b in store.batches(old_chats(), pending_anonymize=True))

    after = rows_of(app_engine, chat_conversations)
    assert outcome == 3
    for i in ids[:3]:
        assert after[i].visitor_email is None
        assert after[i].topic == before[i].topic and after[i].created_at == before[i].created_at
        assert after[i].account_id == "acct_1"
    assert HEX64.fullmatch(after[ids[0]].visitor_ip)
    assert after[ids[0]].visitor_ip != hashlib.sha256(b"203.0.113.1").hexdigest()  # salted
    assert after[ids[1]].visitor_ip is None  # NULL stays NULL
    assert HEX64.fullmatch(after[ids[2]].visitor_ip)
    assert after[ids[3]] == before[ids[3]] and after[ids[4]] == before[ids[4]]
    assert len(rows_of(app_engine, chat_messages)) == 5  # anonymize deletes nothing
    assert store.verify(old_chats(), pending_anonymize=True).clean


def test_an_anonymize_rerun_finds_nothing_left_and_changes_nothing(app_engine):
    add_conversations(app_engine, [chat("acct_1", OLD, ip=f"203.0.113.{i}") for i in range(12)])
    first = chat_store(app_engine, initial_batch_size=5, min_batch_size=1)
    batches = list(first.batches(old_chats(), pending_anonymize=True))
    assert sum(first.anonymize(b).affected for b in batches) == 12
    done = rows_of(app_engine, chat_conversations)

    rerun = chat_store(app_engine)  # a new run: a new store, a new salt
    assert rerun.count(old_chats(), pending_anonymize=True) == 0
    assert list(rerun.batches(old_chats(), pending_anonymize=True)) == []
    assert [rerun.anonymize(b).affected for b in batches] == [0, 0, 0]  # replaying old batches too
    assert rows_of(app_engine, chat_conversations) == done
    assert rerun.count(old_chats()) == 12  # the rows are still there, only no longer identifying


def test_anonymize_batches_count_only_rows_an_earlier_run_left_identifiable(app_engine):
    add_conversations(app_engine, [chat("acct_1", OLD)] * 10)
    first = chat_store(app_engine, initial_batch_size=4, min_batch_size=1)
    crashed_after = next(first.batches(old_chats(), pending_anonymize=True))
    assert first.anonymize(crashed_after).affected == 4

    resumed = chat_store(app_engine, initial_batch_size=4, min_batch_size=1)
    fresh = list(resumed.batches(old_chats(), pending_anonymize=True))  # a new plan, from the start

    assert fresh[0].after is None and sum(b.count for b in fresh) == 6
    assert resumed.count(old_chats(), crashed_after.after, crashed_after.upper, pending_anonymize=True) == 0
    assert sum(resumed.anonymize(b).affected for b in fresh) == 6


def test_a_value_hashes_alike_within_one_run_and_differently_across_runs(app_engine):
    ids = add_conversations(app_engine, [chat("acct_1", OLD, ip="203.0.113.9")] * 2
                            + [chat("acct_2", OLD, ip="203.0.113.9")])
    for account in ("acct_1", "acct_2"):
        store = chat_store(app_engine)
        for batch in store.batches(old_chats(account), pending_anonymize=True):
            store.anonymize(batch)
    ips = [rows_of(app_engine, chat_conversations)[i].visitor_ip for i in ids]

    assert ips[0] == ips[1] != ips[2]


def test_a_delete_refuses_a_batch_planned_for_anonymize(app_engine):
    add_conversations(app_engine, [chat("acct_1", OLD)])
    store = chat_store(app_engine)
    batch = next(store.batches(old_chats(), pending_anonymize=True))

    with pytest.raises(ValueError, match="planned for anonymize"):
        store.delete(batch)
    with pytest.raises(ValueError, match="this store's batches"):
        store.delete(PendingBatch(after=None, upper="99", count=1))
    assert store.count(old_chats()) == 1


# -- refusing bad specs -------------------------------------------------------------------------

@pytest.mark.parametrize("overrides, named", [
    ({"table": "chat_conversation"}, "chat_conversation"),
    ({"table": "archive.chat_conversations"}, "archive.chat_conversations"),
    ({"account_column": "tenant_id"}, "tenant_id"),
    ({"key_column": "uuid"}, "uuid"),
    ({"timestamps": {"created_at": "created"}}, "created"),
    ({"children": [{"table": "chat_message", "foreign_key": "conversation_id"}]}, "chat_message"),
    ({"children": [{"table": "chat_messages", "foreign_key": "conv_id"}]}, "conv_id"),
    ({"children": [{"table": "chat_messages", "foreign_key": "conversation_id", "key_column": "pk"}]}, "pk"),
    ({"anonymize": {"set_null": ["email"]}}, "email"),
    ({"anonymize": {"hash": ["ip"]}}, "ip"),
], ids=lambda v: json.dumps(v) if isinstance(v, dict) else v)
def test_a_spec_naming_a_missing_table_or_column_is_refused_at_construction(app_engine, overrides, named):
    with pytest.raises(ValueError) as refused:
        chat_store(app_engine, spec=overrides)
    assert "location chat_conversations" in str(refused.value) and repr(named) in str(refused.value)


@pytest.mark.parametrize("overrides, reason", [
    ({"key_column": "account_id"}, "not unique"),
    ({"timestamps": {"created_at": "topic"}}, "not a timestamp"),
    ({"anonymize": {"hash": ["created_at"]}}, "not a text column"),
    ({"anonymize": {"set_null": ["account_id"]}}, "NOT NULL"),
    ({"children": [{"table": "chat_messages", "foreign_key": "id"}]}, "no foreign key constraint"),
], ids=lambda v: json.dumps(v) if isinstance(v, dict) else v)
def test_a_spec_the_schema_cannot_honour_safely_is_refused_at_construction(app_engine, overrides, reason):
    with pytest.raises(ValueError, match=f"location chat_conversations: .*{reason}"):
        chat_store(app_engine, spec=overrides)


def test_an_unlisted_table_that_the_database_would_cascade_into_is_refused(app_engine):
    with app_engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE chat_tags (id bigint PRIMARY KEY, conversation_id bigint "
                             "REFERENCES chat_conversations (id) ON DELETE CASCADE)"))
    with pytest.raises(ValueError, match="chat_tags.*ON DELETE CASCADE"):
        chat_store(app_engine)
    both = [{"table": "chat_messages", "foreign_key": "conversation_id"},
            {"table": "chat_tags", "foreign_key": "conversation_id"}]
    assert chat_store(app_engine, spec={"children": both}).children[1].table.name == "chat_tags"


# -- batch sizing -------------------------------------------------------------------------------

def test_batches_grow_while_deletes_stay_fast(app_engine):
    rows = 200_000
    copy_rows(app_engine, "chat_conversations", CONVERSATION,
              (chat("acct_1", OLD - timedelta(seconds=i % 3600)) for i in range(rows)))
    store = chat_store(app_engine)  # with children: starts at 500 rows, the first batch unmeasured

    affected, _, batches = run_deletion(store, old_chats())

    planned = [size for size, _, _ in store.sizer.history]
    assert affected == rows and sum(b.count for b in batches) == rows
    assert planned[0] == 500 and max(planned) >= 8_000
    assert len(batches) < rows // 5_000 // 2  # far fewer, larger batches than a constant 5,000 would make


def test_a_store_without_children_starts_at_5000_rows(app_engine):
    assert chat_store(app_engine, spec={"children": []}).sizer.size == 5_000
    assert chat_store(app_engine).sizer.size == 500


def test_the_batch_size_follows_the_measured_duration_within_bounds():
    sizer = BatchSizer(target_seconds=0.25, initial=5_000, minimum=100, maximum=50_000)

    sizer.observe(5_000, 5_000, 0.01)  # far under target: at most four times larger
    assert sizer.size == 20_000
    sizer.observe(20_000, 20_000, 0.25)  # on target: keep
    assert sizer.size == 20_000
    sizer.observe(20_000, 20_000, 0.5)  # twice the target: halve
    assert sizer.size == 10_000
    sizer.observe(10_000, 10_000, 30.0)  # a stall: at most a quarter per step, never below the minimum
    assert sizer.size == 2_500
    for _ in range(5):
        sizer.observe(sizer.size, sizer.size, 30.0)
    assert sizer.size == 100
    for _ in range(20):
        sizer.observe(sizer.size, sizer.size, 0.001)
    assert sizer.size == 50_000
    sizer.observe(50_000, 12, 0.001)  # a short tail batch teaches nothing
    assert sizer.size == 50_000


def test_a_slow_batch_shrinks_the_next_one_even_though_it_was_looked_up_ahead(app_engine):
    add_conversations(app_engine, [chat("acct_1", OLD)] * 400)
    store = chat_store(app_engine, initial_batch_size=200, min_batch_size=10, target_seconds=1e-9)

    _, _, batches = run_deletion(store, old_chats())

    assert [b.count for b in batches[:3]] == [200, 50, 12]
    assert sum(b.count for b in batches) == 400


# -- export -------------------------------------------------------------------------------------

def test_export_writes_the_selected_rows_and_their_messages_as_json_lines(app_engine, tmp_path):
    mine = add_conversations(app_engine, [chat("acct_1", OLD + timedelta(microseconds=i)) for i in range(5)],
                             messages_each=2)
    add_conversations(app_engine, [chat("acct_1", YOUNG), chat("acct_2", OLD)], messages_each=2)
    store = chat_store(app_engine)

    written = store.export(old_chats(), tmp_path / "export")

    parents = [json.loads(line) for line in (tmp_path / "export" / "chat_conversations.jsonl").read_text().splitlines()]
    messages = [json.loads(line) for line in (tmp_path / "export" / "chat_messages.jsonl").read_text().splitlines()]
    assert written == 5 and [p["id"] for p in parents] == mine
    assert datetime.fromisoformat(parents[3]["created_at"]) == OLD + timedelta(microseconds=3)
    assert parents[0]["created_at"].endswith("+00:00") and parents[0]["last_message_at"] is None
    assert parents[0]["visitor_email"] == "v@example.org"
    assert len(messages) == 10 and {m["conversation_id"] for m in messages} == set(mine)
    assert sorted(p.name for p in (tmp_path / "export").iterdir()) == ["chat_conversations.jsonl",
                                                                      "chat_messages.jsonl"]
    assert store.count(old_chats()) == 5  # exporting removes nothing


def test_logs_carry_counts_and_never_row_contents(app_engine, tmp_path, caplog):
    add_conversations(app_engine, [chat("acct_1", OLD, email="secret.visitor@example.org", ip="192.0.2.55")] * 3,
                      messages_each=1)
    store = chat_store(app_engine)
    caplog.set_level(logging.DEBUG, logger="retention")

    store.export(old_chats(), tmp_path)
    for batch in store.batches(old_chats(), pending_anonymize=True):
        store.anonymize(batch)
    run_deletion(store, old_chats())

    assert "rows" in caplog.text
    assert "secret.visitor" not in caplog.text and "192.0.2.55" not in caplog.text and "message 0" not in caplog.text


# -- the property -------------------------------------------------------------------------------

_rows = st.lists(st.tuples(st.sampled_from(["acct_1", "acct_2"]),
                           st.one_of(st.none(), st.integers(-5, 5))), max_size=40)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=_rows, cutoff_offset=st.integers(-6, 6), batch_size=st.integers(1, 9))
def test_after_deleting_exactly_the_undated_younger_and_other_accounts_rows_remain(app_engine, rows, cutoff_offset,
                                                                                  batch_size):
    with app_engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE chat_messages, chat_conversations"))
    created = [(account, None if offset is None else CUTOFF + offset * SECOND) for account, offset in rows]
    ids = add_conversations(app_engine, [chat(a, t) for a, t in created], messages_each=1) if created else []
    cutoff = CUTOFF + cutoff_offset * SECOND
    store = chat_store(app_engine, initial_batch_size=batch_size, min_batch_size=1)

    affected, children, _ = run_deletion(store, Selector("acct_1", "created_at", cutoff))

    expected = {i for i, (a, t) in zip(ids, created, strict=True) if a != "acct_1" or t is None or t > cutoff}
    assert ids_of(app_engine) == expected
    assert affected == children == len(ids) - len(expected)
