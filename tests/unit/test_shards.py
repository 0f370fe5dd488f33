"""Shards of the account hash: each account is taken by exactly one shard of a count, the same one in every
process, and a location gets one shard per RETENTION_SHARD_RECORDS records planned due, within its pool."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from retention.engine.shards import Shard, account_hash, plan_shards, shard_count, shards
from retention.ids import ACCOUNT_ID
from retention.rules.inventory import RedisLocation, S3Location, SqlLocation
from retention.settings import Settings
from retention.stores.kinds import KINDS

SQL = SqlLocation(kind="sql", data_class="chat_transcripts", conn_id="app_db", table="chat_conversations",
                  account_column="account_id", timestamps={"created_at": "created_at"})
S3 = S3Location(kind="s3", data_class="call_recordings", conn_id="object_store", bucket="recordings",
                key_template="tenants/{account_id}/")
REDIS = RedisLocation(kind="redis", data_class="chat_transcripts", conn_id="presence", key_pattern="p:{account_id}:*")


@given(account=st.from_regex(ACCOUNT_ID, fullmatch=True), count=st.integers(1, 64))
def test_every_account_is_taken_by_exactly_one_shard_of_a_count(account, count):
    takers = [index for index in range(count) if Shard(index, count).takes(account)]
    assert takers == [int.from_bytes(hashlib.sha256(account.encode()).digest()[:8], "big") % count]


def test_the_hash_is_the_same_in_another_process():
    # Python's own str hash is salted per process; the shard hash must not be.
    ids = [f"acct_{i}" for i in range(20)]
    script = ("from retention.engine.shards import account_hash; "
              f"print([account_hash(a) for a in {ids!r}])")
    other = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": "12345", "PYTHONPATH": ":".join(sys.path)})
    assert other.stdout.strip() == str([account_hash(a) for a in ids])


def test_shards_spread_accounts_over_every_index():
    counts = [sum(Shard(i, 4).takes(f"acct_{n}") for n in range(4_000)) for i in range(4)]
    assert sum(counts) == 4_000
    assert min(counts) > 800  # sha256 spreads 4,000 ids over 4 shards near-evenly (expected 1,000 each)


@pytest.mark.parametrize("index, count", [(0, 0), (-1, 2), (2, 2)])
def test_a_shard_outside_its_count_is_refused(index, count):
    with pytest.raises(ValueError, match="0 <= index < count"):
        Shard(index, count)


def test_a_shard_survives_xcom():
    assert Shard.of(Shard(2, 3).as_dict()) == Shard(2, 3)


@pytest.mark.parametrize("spec, due, per_shard, expected", [
    (SQL, 0, 1_000_000, 1),
    (SQL, 999_999, 1_000_000, 1),
    (SQL, 1_000_001, 1_000_000, 2),
    (SQL, 50_000_000, 1_000_000, KINDS["sql"].pool_slots),
    (S3, 3_500, 1_000, min(4, KINDS["s3"].pool_slots)),
    (S3, 10**9, 1, KINDS["s3"].pool_slots),
    (REDIS, 10**9, 1, KINDS["redis"].pool_slots),
])
def test_a_location_gets_one_shard_per_records_within_its_pool(spec, due, per_shard, expected):
    assert shard_count(spec, due, per_shard) == expected
    assert shards(spec, due, per_shard) == [Shard(i, expected) for i in range(expected)]


def test_plan_shards_covers_each_location_with_work():
    planned = plan_shards({"chats": SQL, "recordings": S3}, {"chats": 2_500, "recordings": 10}, records_per_shard=1_000)
    assert planned == {"chats": [Shard(0, 2), Shard(1, 2)], "recordings": [Shard(0, 1)]}


def test_records_per_shard_comes_from_the_environment_and_must_be_positive(monkeypatch):
    monkeypatch.delenv("RETENTION_SHARD_RECORDS", raising=False)
    assert Settings.from_env().shard_records == 1_000_000
    monkeypatch.setenv("RETENTION_SHARD_RECORDS", "5000")
    assert Settings.from_env().shard_records == 5_000
    monkeypatch.setenv("RETENTION_SHARD_RECORDS", "0")
    with pytest.raises(ValueError, match="RETENTION_SHARD_RECORDS"):
        Settings.from_env()
    with pytest.raises(ValueError, match="at least 1"):
        shard_count(SQL, 10, 0)
