"""S3Store.tally against moto's S3 server over HTTP: one listing of the location's root gives, for every
asked account, what per-account ``count`` gives (versions and delete markers on versioned buckets, dated by
LastModified or by a key segment, undated keys never due), whatever else lies under the root."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retention.rules.inventory import KeySegmentTime, S3Location
from retention.stores.base import Due, Selector, Tally
from retention.stores.s3 import S3Store
from retention.stores.s3.tally import Attribution
from tests.fixtures.tally import per_account

CUTOFF = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
ATTACHMENTS = "tenants/{account_id}/attachments/"
SECONDS = KeySegmentTime(key_segment=3, format="%Y-%m-%dT%H:%M:%S")  # tenants/<acct>/attachments/<time>/<file>
ACCOUNTS = ["acct_1", "acct_10", "acct_2"]  # acct_1 is a prefix of acct_10


def location(bucket: str, *, template: str = ATTACHMENTS, timestamp="last_modified",
             versioned: bool = False) -> S3Location:
    return S3Location(kind="s3", data_class="chat_attachments", conn_id="object_store", bucket=bucket,
                      key_template=template, timestamp=timestamp, versioned=versioned)


@contextmanager
def listings(client) -> Iterator[list[str]]:
    """Every ListObjectsV2/ListObjectVersions call the client makes while the block runs."""
    calls: list[str] = []
    hooks = {"before-call.s3.ListObjectVersions": lambda **_: calls.append("versions"),
             "before-call.s3.ListObjectsV2": lambda **_: calls.append("objects")}
    for event, hook in hooks.items():
        client.meta.events.register(event, hook)
    try:
        yield calls
    finally:
        for event, hook in hooks.items():
            client.meta.events.unregister(event, hook)


@pytest.mark.parametrize("template, key, owner", [
    ("tenants/{account_id}/", "tenants/acct_1/a", "acct_1"),
    ("tenants/{account_id}/", "tenants/acct_10/a", "acct_10"),
    ("tenants/{account_id}/", "tenants/acct_1", None),  # no "/" after the id: under no account's prefix
    ("tenants/{account_id}/", "tenants//a", None),
    ("tenants/{account_id}/", "other/acct_1/a", None),
    ("exports/{account_id}-chat/", "exports/a-chat/x", "a"),
    ("exports/{account_id}-chat/", "exports/a-chat-chat/x", "a-chat"),
    ("exports/{account_id}-chat/", "exports/a-mail/x", None),
    ("exports/{account_id}-chat/", "exports/-chat/x", None),
    ("{account_id}/logs/", "acct_1/logs/x", "acct_1"),
    ("{account_id}/logs/", "acct_1/other/x", None),
])
def test_a_key_is_attributed_to_the_one_account_whose_prefix_it_lies_under(template, key, owner):
    attribution = Attribution.of(location("bucket-name", template=template))
    assert attribution.account(key) == owner
    if owner is not None:
        assert key.startswith(location("bucket-name", template=template).prefix(owner))


def stamp(offset_days: int | None) -> str:
    return "not-a-date" if offset_days is None else (CUTOFF + timedelta(days=offset_days)).strftime(SECONDS.format)


# (owner, time segment in days from the cutoff or None for undated, file, versions, then a delete marker?)
layout_key = st.tuples(st.sampled_from(ACCOUNTS + ["acct_100", "stranger"]),
                       st.sampled_from([None, -40, -1, 0, 1, 40]), st.sampled_from(["a", "b"]),
                       st.integers(1, 3), st.booleans())


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(layout=st.lists(layout_key, max_size=10), asked=st.sets(st.sampled_from(ACCOUNTS)),
       cutoffs=st.dictionaries(st.sampled_from(ACCOUNTS), st.sampled_from([None, -2, 0, 2, 60])))
def test_tally_agrees_with_count_on_a_versioned_bucket_dated_by_key(s3_client, make_bucket, layout, asked, cutoffs):
    bucket = make_bucket(versioned=True)
    for owner, offset, name, versions, marker in layout:
        key = f"tenants/{owner}/attachments/{stamp(offset)}/{name}"
        for _ in range(versions):
            s3_client.put_object(Bucket=bucket, Key=key, Body=b"x")
        if marker:
            s3_client.delete_object(Bucket=bucket, Key=key)
    s3_client.put_object(Bucket=bucket, Key="tenants/loose-object", Body=b"x")  # under the root, no account's
    store = S3Store("chat_attachments", location(bucket, timestamp=SECONDS, versioned=True), s3_client, page_size=3)
    accounts = sorted(asked)
    dues = [Due(Selector(a, "created_at", CUTOFF + timedelta(days=days)) if days is not None else Selector(a))
            for a, days in cutoffs.items() if a in asked]

    assert store.tally(accounts, dues) == per_account(store, accounts, dues)


def test_tally_agrees_with_count_on_a_plain_bucket_dated_by_last_modified(s3_client, make_bucket):
    bucket = make_bucket()
    keys = [f"tenants/{a}/attachments/{i}" for a in ("acct_1", "acct_10", "acct_100", "acct_2") for i in range(4)]
    for key in keys:
        s3_client.put_object(Bucket=bucket, Key=key, Body=b"x")
    listed = s3_client.list_objects_v2(Bucket=bucket)["Contents"]
    times = sorted({o["LastModified"] for o in listed})
    store = S3Store("chat_attachments", location(bucket), s3_client, page_size=5)
    middle = times[len(times) // 2]

    for cutoff in (times[0] - timedelta(seconds=1), middle, times[-1]):
        dues = [Due(Selector("acct_1", "created_at", cutoff)), Due(Selector("acct_10"))]
        tallied = store.tally(["acct_1", "acct_10", "acct_3"], dues)
        assert tallied == per_account(store, ["acct_1", "acct_10", "acct_3"], dues)
        assert tallied["acct_1"].total == tallied["acct_10"].total == tallied["acct_10"].due == 4
    assert store.tally(["acct_1"], [Due(Selector("acct_1", "created_at", times[-1]))]) == {"acct_1": Tally(4, 4)}


def test_undated_keys_are_counted_in_the_total_and_never_due(s3_client, make_bucket):
    bucket = make_bucket()
    for key in ("tenants/acct_1/attachments/not-a-date/a", f"tenants/acct_1/attachments/{stamp(-5)}/b",
                "tenants/acct_1/attachments/c"):  # no time segment at all
        s3_client.put_object(Bucket=bucket, Key=key, Body=b"x")
    store = S3Store("chat_attachments", location(bucket, timestamp=SECONDS), s3_client)

    assert store.tally(["acct_1"], [Due(Selector("acct_1", "created_at", CUTOFF))]) == {"acct_1": Tally(3, 1)}


def test_one_listing_pass_whatever_the_number_of_accounts(s3_client, make_bucket):
    bucket = make_bucket(versioned=True)
    accounts = [f"acct_{i}" for i in range(30)]
    for account in accounts:
        s3_client.put_object(Bucket=bucket, Key=f"tenants/{account}/attachments/{stamp(-3)}/a", Body=b"x")
    store = S3Store("chat_attachments", location(bucket, timestamp=SECONDS, versioned=True), s3_client)
    with listings(s3_client) as calls:
        tallied = store.tally(accounts, [Due(Selector(a, "created_at", CUTOFF)) for a in accounts[:10]])

    assert calls == ["versions"]  # 30 keys fit one page: one call for 30 accounts
    assert tallied == {a: Tally(1, 1 if i < 10 else 0) for i, a in enumerate(accounts)}


def test_a_due_for_an_account_not_asked_for_or_to_anonymize_is_refused(s3_client, make_bucket):
    store = S3Store("chat_attachments", location(make_bucket()), s3_client)
    with pytest.raises(ValueError, match="not asked for"):
        store.tally(["acct_1"], [Due(Selector("acct_2"))])
    with pytest.raises(ValueError, match="anonymized"):
        store.tally(["acct_1"], [Due(Selector("acct_1"), pending_anonymize=True)])
