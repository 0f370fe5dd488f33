"""The Redis store's contract against a real redis-server on loopback: SCAN only, key ranges, TTLs, export."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from redis import Redis

from retention.rules.inventory import KeySegmentTime, RedisLocation
from retention.stores.base import Selector
from retention.stores.redis import RedisStore

ACCOUNT = "acme"
CUTOFF = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def location(pattern: str = "presence:{account_id}:*", timestamp: KeySegmentTime | None = None) -> RedisLocation:
    return RedisLocation(kind="redis", data_class="chat_transcripts", conn_id="presence_cache", key_pattern=pattern,
                         timestamp=timestamp)


def store(client: Redis, spec: RedisLocation | None = None, **options: int) -> RedisStore:
    return RedisStore("presence", spec or location(), client, **options)


def keys(client: Redis, pattern: str = "*") -> set[str]:
    return {key.decode() for key in client.scan_iter(match=pattern)}


def everything() -> Selector:
    return Selector(ACCOUNT)


def test_an_account_never_matches_the_keys_of_an_account_whose_id_it_prefixes(redis_client) -> None:
    for account in (ACCOUNT, "acme2", "acme.eu", "acme-old"):
        for i in range(5):
            redis_client.set(f"presence:{account}:{i}", "x")
    redis_client.set("presence:acme", "not under the pattern")  # no ":" after the id: another key shape
    s = store(redis_client)
    assert s.count(everything()) == 5
    assert sum(s.delete(batch).affected for batch in list(s.batches(everything()))) == 5
    assert keys(redis_client, "presence:acme:*") == set()
    assert len(keys(redis_client)) == 16


def test_listing_uses_scan_with_match_and_count_and_never_keys(redis_client) -> None:
    for i in range(50):
        redis_client.set(f"presence:{ACCOUNT}:{i}", "x")
    redis_client.config_resetstat()
    s = store(redis_client, scan_count=7)
    assert s.count(everything()) == 50
    for batch in list(s.batches(everything())):
        s.delete(batch)
    assert s.verify(everything()).remaining == 0
    stats = redis_client.info("commandstats")
    assert stats["cmdstat_scan"]["calls"] > 3  # COUNT 7 over 50 keys: several SCAN calls per listing
    assert "cmdstat_keys" not in stats
    assert stats["cmdstat_unlink"]["calls"] >= 1 and "cmdstat_del" not in stats


def test_batches_are_sorted_key_ranges_and_a_resume_from_an_upper_repeats_and_skips_nothing(redis_client) -> None:
    names = [f"presence:{ACCOUNT}:{i:03}" for i in range(23)]
    for name in names:
        redis_client.set(name, "x")
    s = store(redis_client, batch_size=5)
    first = list(s.batches(everything()))
    assert [b.count for b in first] == [5, 5, 5, 5, 3]
    assert [b.after for b in first[1:]] == [b.upper for b in first[:-1]] and first[0].after is None
    assert sum(s.count(everything(), b.after, b.upper) for b in first) == 23  # each range counted exactly
    s.delete(first[0])
    s.delete(first[1])
    resumed = list(s.batches(everything(), after=first[1].upper))
    assert [b.count for b in resumed] == [5, 5, 3]
    assert sum(s.delete(b).affected for b in resumed) == 13
    assert keys(redis_client) == set()


def test_count_within_after_and_upper_tells_a_crashed_batch_how_much_is_left(redis_client) -> None:
    for i in range(10):
        redis_client.set(f"presence:{ACCOUNT}:{i}", "x")
    s = store(redis_client, batch_size=4)
    batch = next(s.batches(everything()))
    redis_client.unlink(*[f"presence:{ACCOUNT}:{i}" for i in range(2)])  # half of it went before the crash
    assert s.count(everything(), batch.after, batch.upper) == 2


def test_a_key_with_a_ttl_is_present_until_redis_expires_it_and_keeps_its_ttl(redis_client) -> None:
    redis_client.set(f"presence:{ACCOUNT}:ttl", "x", ex=3600)
    redis_client.set(f"presence:{ACCOUNT}:forever", "x")
    redis_client.set("presence:other:ttl", "x", ex=3600)
    s = store(redis_client)
    assert s.count(everything()) == 2 and s.verify(everything()).remaining == 2
    assert sum(s.delete(b).affected for b in list(s.batches(everything()))) == 2
    assert 0 < redis_client.ttl("presence:other:ttl") <= 3600  # another account's TTL untouched
    assert s.verify(everything()).clean


def test_a_key_that_expires_between_scan_and_unlink_is_not_counted_and_not_an_error(redis_client) -> None:
    for i in range(4):
        redis_client.set(f"presence:{ACCOUNT}:{i}", "x")
    s = store(redis_client)
    (batch,) = s.batches(everything())
    redis_client.pexpire(f"presence:{ACCOUNT}:0", 20)  # Redis expires it after the scan listed it
    deadline = time.monotonic() + 10
    while redis_client.exists(f"presence:{ACCOUNT}:0") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not redis_client.exists(f"presence:{ACCOUNT}:0")
    assert s.delete(batch).affected == 3  # UNLINK's reply: what this run removed
    assert s.verify(everything()).clean


def test_a_hold_placed_while_the_batch_waited_stops_it_before_any_key_goes(redis_client) -> None:
    from dataclasses import replace

    for i in range(3):
        redis_client.set(f"presence:{ACCOUNT}:{i}", "x")
    s = store(redis_client)
    (batch,) = s.batches(everything())

    class Held(Exception):
        pass

    def hold() -> None:
        raise Held()

    with pytest.raises(Held):
        s.delete(replace(batch, recheck=hold))
    assert len(keys(redis_client)) == 3


def dated(day: str, n: int = 0) -> str:
    return f"session:{ACCOUNT}:{day}:{n}"


def test_a_day_dated_key_is_kept_until_its_whole_day_is_at_or_before_the_cutoff(redis_client) -> None:
    spec = location("session:{account_id}:*", KeySegmentTime(key_segment=2, format="%Y-%m-%d"))
    for name in (dated("2026-02-28"), dated("2026-03-01"), dated("2026-03-02"), f"session:{ACCOUNT}:undated:1"):
        redis_client.set(name, "x")
    s = store(redis_client, spec)
    old = Selector(ACCOUNT, "created_at", CUTOFF)
    assert s.count(old) == 1
    assert sum(s.delete(b).affected for b in list(s.batches(old))) == 1
    assert keys(redis_client) == {dated("2026-03-01"), dated("2026-03-02"), f"session:{ACCOUNT}:undated:1"}
    residue = s.verify(old)  # the undated key is never deleted by a dated rule: reported, not hidden
    assert residue.remaining == 1 and residue.retained[0].reason == "undated_key" and residue.clean
    assert s.count(Selector(ACCOUNT, "created_at", CUTOFF + timedelta(days=1))) == 1  # 03-01 is whole by 03-02 12:00


def test_a_dated_selector_on_a_location_whose_keys_carry_no_time_is_refused(redis_client) -> None:
    redis_client.set(f"presence:{ACCOUNT}:1", "x")
    with pytest.raises(ValueError, match="carry no created_at"):
        store(redis_client).count(Selector(ACCOUNT, "created_at", CUTOFF))
    assert len(keys(redis_client)) == 1


def test_verify_counts_what_is_left_before_deletion(redis_client) -> None:
    for i in range(6):
        redis_client.set(f"presence:{ACCOUNT}:{i}", "x")
    residue = store(redis_client).verify(everything())
    assert residue.remaining == 6 and not residue.clean


def test_export_writes_every_type_its_value_and_its_ttl_and_deletes_nothing(redis_client, tmp_path) -> None:
    base = f"presence:{ACCOUNT}"
    redis_client.set(f"{base}:s", "text")
    redis_client.set(f"{base}:b", b"\xff\x00")
    redis_client.hset(f"{base}:h", mapping={"a": "1", "b": "2"})
    redis_client.rpush(f"{base}:l", "x", "y", "x")
    redis_client.sadd(f"{base}:set", "p", "q")
    redis_client.zadd(f"{base}:z", {"m": 1.5, "n": 2.0})
    redis_client.set(f"{base}:t", "soon", ex=3600)
    redis_client.set("presence:other:s", "not ours")
    written = store(redis_client).export(everything(), tmp_path / "presence")
    lines = [json.loads(line) for line in (tmp_path / "presence" / "keys.jsonl").read_text().splitlines()]
    by_key = {line["key"]: line for line in lines}
    assert written == 7 == len(lines) and "presence:other:s" not in by_key
    assert (by_key[f"{base}:s"]["type"], by_key[f"{base}:s"]["value"]) == ("string", "text")
    assert by_key[f"{base}:b"]["value"] == {"base64": "/wA="}
    assert by_key[f"{base}:h"]["value"] == {"a": "1", "b": "2"}
    assert by_key[f"{base}:l"]["value"] == ["x", "y", "x"]
    assert by_key[f"{base}:set"]["value"] == ["p", "q"]
    assert by_key[f"{base}:z"]["value"] == [["m", 1.5], ["n", 2.0]]
    assert 0 < by_key[f"{base}:t"]["ttl_ms"] <= 3_600_000 and by_key[f"{base}:s"]["ttl_ms"] is None
    assert len(keys(redis_client)) == 8


def test_export_refuses_a_type_it_cannot_read_naming_those_it_can(redis_client, tmp_path) -> None:
    redis_client.set(f"presence:{ACCOUNT}:s", "text")
    redis_client.xadd(f"presence:{ACCOUNT}:stream", {"seen": "1"})
    with pytest.raises(ValueError, match=r"type stream cannot be exported \(string, hash, list, set, zset can\)"):
        store(redis_client).export(everything(), tmp_path / "presence")
    assert not (tmp_path / "presence" / "keys.jsonl").exists()  # no file that looks complete
    assert len(keys(redis_client)) == 2


def test_each_batch_is_one_unlink_counting_only_what_it_removed(redis_client) -> None:
    for i in range(5):
        redis_client.set(f"presence:{ACCOUNT}:{i}", "x")
    s = store(redis_client, batch_size=2)
    batches = list(s.batches(everything()))
    redis_client.delete(f"presence:{ACCOUNT}:0")  # gone before its batch: UNLINK's reply leaves it out
    redis_client.config_resetstat()
    assert [s.delete(batch).affected for batch in batches] == [1, 2, 1]
    stats = redis_client.info("commandstats")
    assert stats["cmdstat_unlink"]["calls"] == len(batches) == 3


def test_a_batch_from_another_location_is_refused(redis_client) -> None:
    redis_client.set(f"presence:{ACCOUNT}:1", "x")
    (batch,) = RedisStore("elsewhere", location(), redis_client).batches(everything())
    with pytest.raises(ValueError, match="listed for elsewhere"):
        store(redis_client).delete(batch)
    assert len(keys(redis_client)) == 1


def test_anonymize_and_isolate_are_refused_for_keys(redis_client) -> None:
    redis_client.set(f"presence:{ACCOUNT}:1", "x")
    s = store(redis_client)
    (batch,) = s.batches(everything())
    with pytest.raises(ValueError, match="cannot be anonymized"):
        s.anonymize(batch)
    with pytest.raises(ValueError, match="isolation is for SQL"):
        s.isolate(batch)
    assert len(keys(redis_client)) == 1
