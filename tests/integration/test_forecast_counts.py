"""The set-based forecast: each store's ``histogram`` says at which cutoff of a series each account's records fall
due exactly as ``tally`` counts them at each cutoff (real PostgreSQL, moto's S3 over HTTP, a real redis-server),
in a number of statements that does not grow with the accounts; and the forecast built on it equals, line for
line, the previous per-day forecast (``tests.fixtures.forecast_reference``) on the demo stack."""

from __future__ import annotations

import random
import shutil
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pendulum
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retention import embedded
from retention.engine import SweepContext
from retention.engine.forecast import forecast
from retention.ledger import Ledger
from retention.rules.inventory import KeySegmentTime, RedisLocation, S3Location
from retention.settings import Settings
from retention.stores.base import Cutoffs, Due, DueSeries, Histogram, Selector, Store
from retention.stores.redis import RedisStore
from retention.stores.s3 import S3Store
from retention.stores.sql import SqlStore
from tests.fixtures.forecast_reference import previous_forecast
from tests.fixtures.sql import chat_location, copy_rows
from tests.fixtures.stack import REPO
from tests.fixtures.tally import statements

BASE = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
DAYS = Cutoffs(tuple(BASE + timedelta(days=day) for day in range(4)))
CONVERSATION = ("account_id", "created_at", "last_message_at", "visitor_email", "visitor_ip", "topic")
ACCOUNTS = ["acct_1", "acct_10", "acct_2"]


def due_by(histogram: Histogram, account: str, index: int) -> int:
    """What the histogram says is due at the index-th cutoff: everything first due at it or before."""
    return sum(n for first, n in histogram.get(account, {}).items() if first <= index)


def assert_agrees_with_tally(store: Store, series: list[DueSeries]) -> Histogram:
    """At every cutoff of every series, the histogram's count is ``tally``'s due count for that cutoff."""
    histogram = store.histogram(series)
    accounts = [item.account_id for item in series]
    longest = max((len(item.cutoffs.instants) for item in series if item.cutoffs is not None), default=1)
    for index in range(longest):
        dues = [Due(Selector(item.account_id, item.anchor, item.cutoffs.instants[index]), item.pending_anonymize)
                if item.anchor is not None and item.cutoffs is not None else Due(Selector(item.account_id),
                                                                                  item.pending_anonymize)
                for item in series if item.cutoffs is None or index < len(item.cutoffs.instants)]
        tallied = store.tally(accounts, dues)
        for due in dues:
            account = due.selector.account_id
            expected = tallied[account].due if account in tallied else 0
            assert due_by(histogram, account, index) == expected, (account, index)
    return histogram


# -- SQL ---------------------------------------------------------------------------------------------

around = st.one_of(st.none(), st.sampled_from([-86_400_000_000, -1, 0, 1, 86_400_000_000 * 2, 86_400_000_000 * 40]))
sql_row = st.tuples(st.sampled_from([*ACCOUNTS, "stranger"]), st.integers(0, 3), around, around, st.booleans())
sql_series = st.tuples(st.sampled_from([None, "created_at", "last_activity_at"]), st.booleans(), st.booleans())


@pytest.mark.postgres
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(sql_row, max_size=30), wanted=st.dictionaries(st.sampled_from(ACCOUNTS), sql_series, min_size=1))
def test_sql_histogram_agrees_with_tally_at_every_cutoff(app_engine, rows, wanted):
    """Rows exactly at a cutoff, a microsecond before or after it, days away, undated; some already anonymized."""
    with app_engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE chat_messages, chat_conversations RESTART IDENTITY"))

    def when(day: int, micros: int | None) -> datetime | None:
        return None if micros is None else DAYS.instants[day] + timedelta(microseconds=micros)

    copy_rows(app_engine, "chat_conversations", CONVERSATION,
              [(account, when(day, created), when(day, last), None if cleared else "v@example.org",
                "a" * 64 if cleared else "203.0.113.7", "billing")
               for account, day, created, last, cleared in rows])
    store = SqlStore("chat_conversations", chat_location(), app_engine)
    own = Cutoffs((BASE - MICROSECOND, BASE, BASE, BASE + timedelta(days=2)))  # equal neighbours allowed
    series = [DueSeries(account, anchor, (own if shared else DAYS) if anchor else None, pending)
              for account, (anchor, shared, pending) in wanted.items()]

    assert_agrees_with_tally(store, series)


@pytest.mark.postgres
def test_sql_histogram_on_naive_timestamp_and_date_columns(app_engine):
    with app_engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE legacy (id bigint PRIMARY KEY, account_id text NOT NULL, "
                             "logged_at timestamp without time zone, day date)"))
        conn.execute(sa.text("INSERT INTO legacy VALUES (1, 'a', '2025-03-01 12:00:00', '2025-02-28'), "
                             "(2, 'a', '2025-03-01 12:00:00.000001', '2025-03-01'), (3, 'b', '2025-03-02 12:00:00', "
                             "'2025-03-02'), (4, 'b', NULL, NULL), (5, 'b', '2025-03-01 11:00:00', '2025-03-03')"))
    store = SqlStore("legacy", chat_location(table="legacy", children=[], anonymize=None,
                                             timestamps={"created_at": "logged_at", "last_activity_at": "day"}),
                     app_engine)

    by_time = assert_agrees_with_tally(store, [DueSeries("a", "created_at", DAYS), DueSeries("b", "created_at", DAYS)])
    by_day = assert_agrees_with_tally(store, [DueSeries("a", "last_activity_at", DAYS),
                                              DueSeries("b", "last_activity_at", DAYS)])

    assert by_time == {"a": {0: 1, 1: 1}, "b": {0: 1, 1: 1}}  # a microsecond after a cutoff waits a day
    assert by_day == {"a": {0: 1, 1: 1}, "b": {2: 1, 3: 1}}  # a day counts once it has ended by the cutoff


@pytest.mark.postgres
@pytest.mark.parametrize("n", [10, 200])
def test_sql_histogram_sends_one_statement_per_anchor_whatever_the_accounts(app_engine, n):
    accounts = [f"acct_{i}" for i in range(n)]
    copy_rows(app_engine, "chat_conversations", CONVERSATION,
              [(a, BASE - timedelta(days=d), None, "v@example.org", "203.0.113.7", "t")
               for a in accounts for d in (-2, 0, 10)])
    store = SqlStore("chat_conversations", chat_location(), app_engine)
    series = [DueSeries(a, "created_at", DAYS) if i % 3 else DueSeries(a, None, None) for i, a in enumerate(accounts)]

    with statements(app_engine) as sent:
        histogram = store.histogram(series)

    assert len([s for s in sent if s.lstrip().upper().startswith("SELECT")]) == 2  # created_at, and everything
    assert histogram["acct_1"] == {0: 2, 2: 1} and histogram["acct_0"] == {0: 3}


# -- S3 ----------------------------------------------------------------------------------------------

SECONDS = KeySegmentTime(key_segment=3, format="%Y-%m-%dT%H:%M:%S")  # tenants/<acct>/attachments/<time>/<file>


def s3_location(bucket: str, *, timestamp: KeySegmentTime | str = SECONDS, versioned: bool = False) -> S3Location:
    return S3Location(kind="s3", data_class="chat_attachments", conn_id="object_store", bucket=bucket,
                      key_template="tenants/{account_id}/attachments/", timestamp=timestamp, versioned=versioned)


s3_key = st.tuples(st.sampled_from([*ACCOUNTS, "acct_100"]), st.integers(0, 3),
                   st.sampled_from([None, -86_400, -1, 0, 1, 86_400 * 2]), st.integers(1, 2), st.booleans())


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(layout=st.lists(s3_key, max_size=8), wanted=st.dictionaries(st.sampled_from(ACCOUNTS), st.booleans(),
                                                                     min_size=1))
def test_s3_histogram_agrees_with_tally_on_a_versioned_bucket_dated_by_key(s3_client, make_bucket, layout, wanted):
    bucket = make_bucket(versioned=True)
    for owner, day, seconds, versions, marker in layout:
        stamp = "undated" if seconds is None else (DAYS.instants[day] + timedelta(seconds=seconds)).strftime(
            SECONDS.format)
        key = f"tenants/{owner}/attachments/{stamp}/f"
        for _ in range(versions):
            s3_client.put_object(Bucket=bucket, Key=key, Body=b"x")
        if marker:
            s3_client.delete_object(Bucket=bucket, Key=key)
    store = S3Store("chat_attachments", s3_location(bucket, versioned=True), s3_client, page_size=3)

    assert_agrees_with_tally(store, [DueSeries(a, "created_at", DAYS) if dated else DueSeries(a, None, None)
                                     for a, dated in wanted.items()])


def test_s3_histogram_on_a_plain_bucket_dated_by_last_modified(s3_client, make_bucket):
    bucket = make_bucket()
    for account in ACCOUNTS:
        for i in range(3):
            s3_client.put_object(Bucket=bucket, Key=f"tenants/{account}/attachments/{i}", Body=b"x")
    times = sorted({o["LastModified"] for o in s3_client.list_objects_v2(Bucket=bucket)["Contents"]})
    store = S3Store("chat_attachments", s3_location(bucket, timestamp="last_modified"), s3_client, page_size=4)
    series = Cutoffs((times[0] - timedelta(seconds=1), times[0], times[-1]))

    histogram = assert_agrees_with_tally(store, [DueSeries(a, "created_at", series) for a in ACCOUNTS])

    assert sum(due_by(histogram, a, 2) for a in ACCOUNTS) == 9


# -- Redis -------------------------------------------------------------------------------------------

DAY = KeySegmentTime(key_segment=2, format="%Y-%m-%d")  # presence:<account>:<day>:<n>


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(layout=st.sets(st.tuples(st.sampled_from([*ACCOUNTS, "acct_100"]), st.sampled_from([None, -2, -1, 0, 1, 3]),
                                st.integers(0, 2)), max_size=15),
       wanted=st.dictionaries(st.sampled_from(ACCOUNTS), st.booleans(), min_size=1))
def test_redis_histogram_agrees_with_tally(redis_client, layout, wanted):
    redis_client.flushall()
    for account, offset, n in layout:
        day = "someday" if offset is None else (BASE + timedelta(days=offset)).strftime(DAY.format)
        redis_client.set(f"presence:{account}:{day}:{n}", "x")
    store = RedisStore("presence", RedisLocation(kind="redis", data_class="chat_transcripts", conn_id="presence_cache",
                                                 key_pattern="presence:{account_id}:*", timestamp=DAY),
                       redis_client, scan_count=5)

    assert_agrees_with_tally(store, [DueSeries(a, "created_at", DAYS) if dated else DueSeries(a, None, None)
                                     for a, dated in wanted.items()])


# -- the forecast ------------------------------------------------------------------------------------

def lines_and_reference(stack, start: pendulum.DateTime, days: int, **kwargs) -> tuple[list, list]:
    with Ledger.open(stack.ledger_url) as ledger:
        ctx = SweepContext.load(Settings.from_env(), ledger)
        ignored = kwargs.get("ignore_holds", ())
        holds = [hold for hold in ledger.resolver_holds() if hold.id not in ignored]
        return list(forecast(ctx, start, days, **kwargs)), previous_forecast(ctx, start, days, holds)


@pytest.mark.postgres
@pytest.mark.parametrize("days, later", [(7, False), (30, True), (366, True)])
def test_the_forecast_equals_the_previous_per_day_forecast_on_the_demo(stack, days, later):
    lines, reference = lines_and_reference(stack, stack.now, days)

    assert lines == reference and lines
    assert bool({line.day for line in lines} - {stack.now.to_date_string()}) == later  # days after day 0 compared


@pytest.mark.postgres
def test_holds_placed_and_released_within_the_forecast_keep_data_on_their_days_only(stack):
    """A forecast from 25 days ago: a hold in force from day 5 to day 12 and one from day 20 on. The days a hold
    comes into or out of force are resolved again; the lines equal the previous per-day forecast's."""
    start = stack.now.subtract(days=25)
    with Ledger.open(stack.ledger_url) as ledger:
        spell = ledger.place_hold(account_id="acct_1001", data_class=None, reason="audit", reference="A-1",
                                  placed_by="counsel", at=start.add(days=5).subtract(hours=1))
        ledger.release_hold(spell.id, reason="audit closed", released_by="counsel", at=start.add(days=12))
        ledger.place_hold(account_id="acct_6006", data_class="chat_transcripts", reason="litigation",
                          reference="LEGAL-1", placed_by="counsel", at=start.add(days=20))

    lines, reference = lines_and_reference(stack, start, 30)

    assert lines == reference
    held = {start.add(days=day).to_date_string() for day in range(5, 12)}
    assert not [line for line in lines if line.account_id == "acct_1001" and line.day in held]
    released = start.add(days=12).to_date_string()
    assert [line for line in lines if line.account_id == "acct_1001" and line.day == released]
    assert not [line for line in lines if (line.account_id, line.data_class) == ("acct_6006", "chat_transcripts")
                and line.day >= start.add(days=20).to_date_string()]


@pytest.mark.postgres
def test_ignoring_a_hold_forecasts_what_its_release_would_make_due(stack):
    start = pendulum.now("UTC")
    before, _ = lines_and_reference(stack, start, 30)
    with Ledger.open(stack.ledger_url) as ledger:
        hold = ledger.place_hold(account_id="acct_1001", data_class="chat_transcripts", reason="litigation",
                                 reference="LEGAL-1", placed_by="counsel", at=start)
    held, held_reference = lines_and_reference(stack, start, 30)
    ignored, ignored_reference = lines_and_reference(stack, start, 30, ignore_holds=[hold.id])

    in_scope = [line for line in before if (line.account_id, line.data_class) == ("acct_1001", "chat_transcripts")]
    assert in_scope  # the hold's scope had records falling due
    assert held == held_reference == [line for line in before if line not in in_scope]
    assert ignored == ignored_reference == before


STATES = ["trial", "active", "suspended", "terminated"]
JURISDICTIONS = ["EEA", "UK", "CH", "US-CA", "OTHER"]
INSTRUCTIONS = {"chat_transcripts": ["P10D", "P200D"], "visitor_activity": ["P60D"], "contact_records": ["P400D"]}


def registry(rng: random.Random, count: int, now: pendulum.DateTime) -> list[str]:
    """``count`` accounts as accounts.yaml lines: every state and jurisdiction, some with instructions, elections,
    contract ends and terminations within the forecast's days (their profiles mixed)."""
    lines = ["accounts:"]
    for n in range(count):
        state = rng.choice(STATES)
        lines += [f"  - id: acct_{9000 + n}", f"    state: {state}", f"    jurisdiction: {rng.choice(JURISDICTIONS)}",
                  "    created_at: 2021-01-04"]
        if rng.random() < 0.5:
            lines.append(f"    contract_end: {now.subtract(days=rng.randint(-40, 900)).to_date_string()}")
        if state == "terminated" or rng.random() < 0.2:
            choice = rng.choice(["delete", "return"])
            lines.append(f"    election: {{choice: {choice}, elected_at: 2024-01-02T00:00:00Z}}")
        if state == "terminated":
            lines.append(f"    terminated_at: {now.subtract(days=rng.randint(0, 200)).to_iso8601_string()}")
        chosen = {name: rng.choice(periods) for name, periods in INSTRUCTIONS.items() if rng.random() < 0.3}
        if chosen:
            lines.append("    instructions: {" + ", ".join(f"{name}: {p}" for name, p in chosen.items()) + "}")
    return lines


@pytest.mark.postgres
def test_a_generated_registry_forecasts_as_the_previous_per_day_forecast(stack, tmp_path: Path, monkeypatch):
    """A few hundred accounts of mixed states, jurisdictions, instructions, elections and contract overrides, with
    holds on one account, on one data class and on one account's data class, one of them placed and released
    within the forecast: accounts sharing a profile share a decision, and the lines equal the oracle's."""
    rng = random.Random(20)
    count = 120
    ids = [f"acct_{9000 + n}" for n in range(count)]
    urllib.request.urlopen(urllib.request.Request(f"{stack.endpoint}/moto-api/reset", method="POST")).close()
    embedded.seed(stack.app_url, embedded.s3_client(stack.endpoint), ids, stack.now, per_age=1)
    accounts = tmp_path / "accounts.yaml"
    accounts.write_text("\n".join(registry(rng, count, stack.now)) + "\n")
    rules = tmp_path / "rules"
    shutil.copytree(REPO / "retention_rules", rules)
    overridden = rng.sample(ids, 6)  # contract overrides for six accounts (an instruction still wins over one)
    with (rules / "overrides.yaml").open("a") as overrides:
        for n, (account, name) in enumerate(zip(overridden, ["chat_transcripts", "visitor_activity"] * 3, strict=True)):
            overrides.write(f"  - id: generated-{n}\n    account_id: {account}\n    data_class: {name}\n"
                            f"    retain_for: P{30 + n * 20}D\n    contract_reference: \"OF-{n}\"\n")
    monkeypatch.setenv("RETENTION_ACCOUNTS_FILE", str(accounts))
    monkeypatch.setenv("RETENTION_RULES_DIR", str(rules))
    start = stack.now.subtract(days=10)
    with Ledger.open(stack.ledger_url) as ledger:
        ledger.place_hold(account_id=ids[3], data_class=None, reason="audit", reference="A-1", placed_by="counsel",
                          at=start.subtract(days=1))
        ledger.place_hold(account_id=None, data_class="contact_records", reason="regulator", reference="R-1",
                          placed_by="counsel", at=start.subtract(days=1))
        spell = ledger.place_hold(account_id=ids[7], data_class="chat_transcripts", reason="litigation",
                                  reference="L-1", placed_by="counsel", at=start.add(days=3))
        ledger.release_hold(spell.id, reason="settled", released_by="counsel", at=start.add(days=8))
        ledger.place_hold(account_id=None, data_class="visitor_activity", reason="inquiry", reference="I-1",
                          placed_by="counsel", at=start.add(days=5))

    lines, reference = lines_and_reference(stack, start, 30)

    assert lines == reference
    assert len({line.account_id for line in lines}) > count // 2  # most accounts have lines: the test compares much
    assert {line.data_class for line in lines} >= {"chat_transcripts", "visitor_activity"}
    assert not [line for line in lines if line.account_id == ids[3] or line.data_class == "contact_records"]
