"""RedisStore.tally against a real redis-server: one SCAN of the pattern with ``*`` for the account gives, for
every asked account, what per-account ``count`` gives; keys are attributed by the pattern exactly as Redis's
own MATCH attributes them."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis import Redis

from retention.rules.inventory import KeySegmentTime, RedisLocation
from retention.stores.base import Due, Selector, Tally
from retention.stores.redis import RedisStore, glob_regex
from tests.fixtures.tally import per_account

CUTOFF = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DAY = KeySegmentTime(key_segment=2, format="%Y-%m-%d")  # presence:<account>:<day>:<n>
ACCOUNTS = ["acme", "acme2", "acme.eu"]  # acme is a prefix of the others


def location(pattern: str = "presence:{account_id}:*", timestamp: KeySegmentTime | None = DAY) -> RedisLocation:
    return RedisLocation(kind="redis", data_class="chat_transcripts", conn_id="presence_cache", key_pattern=pattern,
                         timestamp=timestamp)


def matched_by_redis(client: Redis, pattern: str) -> set[bytes]:
    return set(client.scan_iter(match=pattern, count=1000))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pattern=st.text(alphabet="ab:*?[]^-\\", max_size=7),
       keys=st.sets(st.text(alphabet="ab:-[]^\\", min_size=1, max_size=6), min_size=1, max_size=12))
def test_the_glob_reads_as_redis_match_reads_it(redis_client, pattern, keys):
    # Non-empty keys: Redis matches nothing against the empty string, not even "*"; a key an account owns
    # always holds the account id.
    redis_client.flushall()
    for key in keys:
        redis_client.set(key, "x")
    ours = {key.encode() for key in keys if re.fullmatch(glob_regex(pattern.encode()), key.encode(), re.DOTALL)}
    assert ours == matched_by_redis(redis_client, pattern)


def day(offset: int | None) -> str:
    return "someday" if offset is None else (CUTOFF + timedelta(days=offset)).strftime(DAY.format)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(layout=st.sets(st.tuples(st.sampled_from([*ACCOUNTS, "acme-old", "other"]),
                                st.sampled_from([None, -30, -1, 0, 1, 30]), st.integers(0, 2)), max_size=15),
       asked=st.sets(st.sampled_from(ACCOUNTS)),
       cutoffs=st.dictionaries(st.sampled_from(ACCOUNTS), st.sampled_from([None, -2, 0, 2])))
def test_tally_agrees_with_count_per_account(redis_client, layout, asked, cutoffs):
    redis_client.flushall()
    for account, offset, n in layout:
        redis_client.set(f"presence:{account}:{day(offset)}:{n}", "x")
    redis_client.set("presence:acme", "x")  # no ":" after the id: not under the pattern
    redis_client.set("presence::2026-01-01:0", "x")  # no account id at all
    store = RedisStore("presence", location(), redis_client, scan_count=5)
    accounts = sorted(asked)
    dues = [Due(Selector(a, "created_at", CUTOFF + timedelta(days=days)) if days is not None else Selector(a))
            for a, days in cutoffs.items() if a in asked]

    assert store.tally(accounts, dues) == per_account(store, accounts, dues)


@pytest.mark.parametrize("pattern", ["session:{account_id}", "chat:{account_id}:[ab]?:*", "x:{account_id}/\\*"])
def test_patterns_with_a_class_an_escape_or_nothing_after_the_id(redis_client, pattern):
    for account in ("acme", "acme2"):
        for suffix in ("", ":a1:z", ":c1:z", ":a:z", "/*", "/x", ":b9:"):
            redis_client.set(pattern.partition("{account_id}")[0] + account + suffix, "x")
    store = RedisStore("presence", location(pattern, timestamp=None), redis_client)

    tallied = store.tally(["acme", "acme2"], [Due(Selector("acme"))])

    assert tallied == per_account(store, ["acme", "acme2"], [Due(Selector("acme"))])
    assert tallied["acme"].total == tallied["acme"].due > 0


def test_one_scan_pass_whatever_the_number_of_accounts(redis_client):
    accounts = [f"acct_{i}" for i in range(40)]
    for account in accounts:
        redis_client.set(f"presence:{account}:{day(-3)}:0", "x")
    store = RedisStore("presence", location(), redis_client, scan_count=1000)
    redis_client.config_resetstat()

    tallied = store.tally(accounts, [Due(Selector(a, "created_at", CUTOFF)) for a in accounts[:10]])

    assert redis_client.info("commandstats")["cmdstat_scan"]["calls"] == 1  # 40 keys, COUNT 1000: one call
    assert tallied == {a: Tally(1, 1 if i < 10 else 0) for i, a in enumerate(accounts)}


def test_a_due_for_an_account_not_asked_for_or_to_anonymize_is_refused(redis_client):
    store = RedisStore("presence", location(), redis_client)
    with pytest.raises(ValueError, match="not asked for"):
        store.tally(["acme"], [Due(Selector("acme2"))])
    with pytest.raises(ValueError, match="anonymized"):
        store.tally(["acme"], [Due(Selector("acme"), pending_anonymize=True)])
