"""The S3 store against a real S3 endpoint over HTTP (moto's threaded server on 127.0.0.1).

What is pinned down: nothing younger than the cutoff, undated or outside the account's prefix is
deleted; everything selected is deleted down to the last version and delete marker; Object Lock is
reported as retained with its date, never as deleted; cursors resume exactly; counts are exact; no
object key reaches a log line or an error message.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError

from retention.rules.inventory import KeySegmentTime, S3Location
from retention.stores.base import PendingBatch, Retained, Selector
from retention.stores.s3 import S3Store, S3StoreError

ACCOUNT = "acct_1001"
CUTOFF = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
RECORDINGS = "tenants/{account_id}/recordings/"
ATTACHMENTS = "tenants/{account_id}/attachments/"
SECONDS = KeySegmentTime(key_segment=3, format="%Y-%m-%dT%H:%M:%S")  # tenants/<acct>/attachments/<time>/<file>


def location(bucket: str, *, template: str = RECORDINGS, timestamp="last_modified",
             versioned: bool = False) -> S3Location:
    return S3Location(kind="s3", data_class="call_recordings", conn_id="object_store", bucket=bucket,
                      key_template=template, timestamp=timestamp, versioned=versioned)


def everything(account: str = ACCOUNT) -> Selector:
    return Selector(account_id=account)


def older_than(cutoff: datetime, account: str = ACCOUNT) -> Selector:
    return Selector(account_id=account, anchor="created_at", cutoff=cutoff)


def put_all(client, bucket: str, keys, body: bytes = b"x") -> None:
    keys = list(keys)
    with ThreadPoolExecutor(max_workers=12) as pool:
        list(pool.map(lambda key: client.put_object(Bucket=bucket, Key=key, Body=body), keys))


def current_keys(client, bucket: str, prefix: str = "") -> set[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {o["Key"] for page in pages for o in page.get("Contents", ())}


def all_versions(client, bucket: str, prefix: str = "") -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(versions, delete markers) as (key, version id), listed until two listings agree."""
    previous = None
    while True:
        versions, markers = [], []
        for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
            versions += [(v["Key"], v["VersionId"]) for v in page.get("Versions", ())]
            markers += [(m["Key"], m["VersionId"]) for m in page.get("DeleteMarkers", ())]
        snapshot = (sorted(versions), sorted(markers))
        if snapshot == previous:
            return snapshot
        previous = snapshot


def run(store: S3Store, selector: Selector, after: str | None = None):
    """What the engine does: every batch after the checkpoint, deleted in turn."""
    batches, outcomes = [], []
    for batch in store.batches(selector, after=after):
        batches.append(batch)
        outcomes.append(store.delete(batch))
    return batches, outcomes


def affected(outcomes) -> int:
    return sum(o.affected for o in outcomes)


def retained_in(outcomes) -> tuple[Retained, ...]:
    """Retained records over all batches, merged per (reason, retain-until) and sorted like verify's."""
    merged = Counter()
    for outcome in outcomes:
        for r in outcome.retained:
            merged[(r.reason, r.retain_until)] += r.count
    return tuple(Retained(reason, n, until) for (reason, until), n in
                 sorted(merged.items(), key=lambda item: (item[0][0], item[0][1] or datetime.max.replace(tzinfo=UTC))))


def stamped(at: datetime, name: str = "file.bin", account: str = ACCOUNT) -> str:
    return f"tenants/{account}/attachments/{at:%Y-%m-%dT%H:%M:%S}/{name}"


# -- the cutoff boundary (key-segment time: the only clock a test can set) -------------------------

@pytest.fixture
def around_the_cutoff(s3_client, make_bucket):
    bucket = make_bucket()
    offsets = {"a_day_older": -timedelta(days=1), "a_second_older": -timedelta(seconds=1),
               "at_cutoff": timedelta(0), "a_second_younger": timedelta(seconds=1),
               "a_day_younger": timedelta(days=1)}
    keys = {name: [stamped(CUTOFF + offset, f"{i}.bin") for i in range(2)] for name, offset in offsets.items()}
    put_all(s3_client, bucket, [k for ks in keys.values() for k in ks])
    store = S3Store("attachments", location(bucket, template=ATTACHMENTS, timestamp=SECONDS), s3_client)
    _, outcomes = run(store, older_than(CUTOFF))
    return current_keys(s3_client, bucket), keys, outcomes


def test_object_dated_exactly_at_the_cutoff_is_deleted(around_the_cutoff) -> None:
    left, keys, outcomes = around_the_cutoff
    assert not left & set(keys["at_cutoff"] + keys["a_second_older"] + keys["a_day_older"])
    assert affected(outcomes) == 6


def test_object_one_second_younger_than_cutoff_survives(around_the_cutoff) -> None:
    left, keys, _ = around_the_cutoff
    assert left == set(keys["a_second_younger"] + keys["a_day_younger"])


def test_day_dated_key_is_kept_until_its_whole_day_is_at_or_before_the_cutoff(s3_client, make_bucket) -> None:
    bucket = make_bucket()
    day = KeySegmentTime(key_segment=3, format="%Y-%m-%d")
    older, same_day = f"tenants/{ACCOUNT}/attachments/2025-02-28/a", f"tenants/{ACCOUNT}/attachments/2025-03-01/a"
    put_all(s3_client, bucket, [older, same_day])
    store = S3Store("attachments", location(bucket, template=ATTACHMENTS, timestamp=day), s3_client)

    run(store, older_than(datetime(2025, 3, 1, 23, 59, 59, tzinfo=UTC)))  # the day is not over yet
    assert current_keys(s3_client, bucket) == {same_day}
    run(store, older_than(datetime(2025, 3, 1, 23, 59, 59, 999999, tzinfo=UTC)))
    assert current_keys(s3_client, bucket) == set()


def test_undated_keys_are_kept_and_reported_as_retained(s3_client, make_bucket) -> None:
    bucket = make_bucket()
    base = f"tenants/{ACCOUNT}/attachments/"
    undated = [base + "not-a-date/a", base + "2025-13-45T00:00:00/b", base + "loose-file", base]
    dated = stamped(CUTOFF - timedelta(days=3))
    put_all(s3_client, bucket, undated + [dated])
    store = S3Store("attachments", location(bucket, template=ATTACHMENTS, timestamp=SECONDS), s3_client)

    assert store.count(older_than(CUTOFF)) == 1
    _, outcomes = run(store, older_than(CUTOFF))

    assert affected(outcomes) == 1
    assert current_keys(s3_client, bucket) == set(undated)
    residue = store.verify(older_than(CUTOFF))
    assert residue.remaining == 4 and residue.retained == (Retained("undated_key", 4),) and residue.clean


def test_deleting_all_of_an_account_takes_undated_keys_too(s3_client, make_bucket) -> None:
    bucket = make_bucket()
    put_all(s3_client, bucket, [f"tenants/{ACCOUNT}/attachments/not-a-date/a", stamped(CUTOFF)])
    store = S3Store("attachments", location(bucket, template=ATTACHMENTS, timestamp=SECONDS), s3_client)
    _, outcomes = run(store, everything())
    assert affected(outcomes) == 2 and current_keys(s3_client, bucket) == set()
    assert store.verify(everything()).remaining == 0


# -- LastModified --------------------------------------------------------------------------------

@pytest.fixture
def uploaded(s3_client, make_bucket):
    bucket = make_bucket()
    put_all(s3_client, bucket, [f"tenants/{ACCOUNT}/recordings/{i:03}.wav" for i in range(20)])
    times = [o["LastModified"] for o in s3_client.list_objects_v2(Bucket=bucket)["Contents"]]
    return bucket, min(times), max(times)


def test_last_modified_cutoff_before_the_upload_deletes_nothing(s3_client, uploaded) -> None:
    bucket, first, _ = uploaded
    store = S3Store("recordings", location(bucket), s3_client)
    batches, _ = run(store, older_than(first - timedelta(seconds=1)))
    assert batches == [] and len(current_keys(s3_client, bucket)) == 20


def test_last_modified_cutoff_at_the_upload_time_deletes_everything(s3_client, uploaded) -> None:
    bucket, _, last = uploaded
    store = S3Store("recordings", location(bucket), s3_client)
    assert store.count(older_than(last)) == 20
    _, outcomes = run(store, older_than(last))
    assert affected(outcomes) == 20 and current_keys(s3_client, bucket) == set()
    assert store.verify(older_than(last)).remaining == 0


# -- scope ---------------------------------------------------------------------------------------

def test_other_accounts_and_other_prefixes_are_untouched(s3_client, make_bucket) -> None:
    bucket = make_bucket()
    ours = [f"tenants/acct_1/recordings/{i}.wav" for i in range(30)]
    theirs = ([f"tenants/acct_10/recordings/{i}.wav" for i in range(30)]  # acct_1 is a prefix of acct_10
              + [f"tenants/acct_2/recordings/{i}.wav" for i in range(30)]
              + ["tenants/acct_1/invoices/1.pdf", "tenants/acct_1/recordings", "tenants/acct_1recordings/x"])
    put_all(s3_client, bucket, ours + theirs)
    store = S3Store("recordings", location(bucket), s3_client)

    _, outcomes = run(store, everything("acct_1"))

    assert affected(outcomes) == 30
    assert current_keys(s3_client, bucket) == set(theirs)


def test_an_account_id_with_a_slash_is_refused(s3_client, make_bucket) -> None:
    # Refused where a selector is made (retention.ids), before any store could turn it into a wider prefix.
    with pytest.raises(ValueError, match="account_id: is not an account id"):
        everything("acct_1/recordings/x")


def test_a_cursor_of_another_account_is_refused(s3_client, make_bucket) -> None:
    bucket = make_bucket()
    put_all(s3_client, bucket, [f"tenants/acct_1/recordings/{i}.wav" for i in range(3)])
    store = S3Store("recordings", location(bucket), s3_client)
    upper = next(iter(store.batches(everything("acct_1")))).upper
    with pytest.raises(ValueError, match="cursor was not issued by this location for this account"):
        list(store.batches(everything("acct_2"), after=upper))


# -- versioned buckets ---------------------------------------------------------------------------

def fill_versioned(client, bucket: str, account: str, keys: int) -> int:
    """Several versions per key, delete markers on top of some and between versions of others."""
    entries = 0
    for i in range(keys):
        key = f"tenants/{account}/recordings/{i:03}.wav"
        for v in range(2 + i % 2):
            client.put_object(Bucket=bucket, Key=key, Body=f"v{v}".encode())
            entries += 1
        if i % 3 == 0:
            client.delete_object(Bucket=bucket, Key=key)  # marker on top: no current object
            entries += 1
        elif i % 3 == 1:
            client.delete_object(Bucket=bucket, Key=key)
            client.put_object(Bucket=bucket, Key=key, Body=b"again")  # marker between versions
            entries += 2
    return entries


def test_versioned_bucket_ends_with_no_versions_and_no_delete_markers_under_the_prefix(s3_client, make_bucket) -> None:
    bucket = make_bucket(versioned=True)
    with ThreadPoolExecutor(max_workers=2) as pool:
        ours, theirs = pool.map(lambda a: fill_versioned(s3_client, bucket, a, 40), [ACCOUNT, "acct_2002"])
    their_prefix = "tenants/acct_2002/recordings/"
    their_before = all_versions(s3_client, bucket, their_prefix)
    store = S3Store("recordings", location(bucket, versioned=True), s3_client, batch_size=25, chunk_size=10,
                    page_size=9)  # keys span listing pages; the next pages are listed while a batch is deleted

    assert store.count(everything()) == ours
    batches, outcomes = run(store, everything())

    assert affected(outcomes) == ours == sum(b.count for b in batches)
    assert all_versions(s3_client, bucket, f"tenants/{ACCOUNT}/") == ([], [])
    assert all_versions(s3_client, bucket, their_prefix) == their_before and sum(map(len, their_before)) == theirs
    residue = store.verify(everything())
    assert residue.remaining == 0 and residue.retained == () and residue.clean


def test_a_key_whose_newest_version_is_younger_than_the_cutoff_keeps_all_its_versions(s3_client, make_bucket) -> None:
    bucket = make_bucket(versioned=True)
    old, renewed = f"tenants/{ACCOUNT}/recordings/old.wav", f"tenants/{ACCOUNT}/recordings/renewed.wav"
    for key in (old, old, renewed):
        s3_client.put_object(Bucket=bucket, Key=key, Body=b"v")
    cutoff = max(v["LastModified"] for v in s3_client.list_object_versions(Bucket=bucket)["Versions"])
    time.sleep(max(0.0, (cutoff + timedelta(seconds=1.1) - datetime.now(UTC)).total_seconds()))
    s3_client.put_object(Bucket=bucket, Key=renewed, Body=b"v2")  # a second after the cutoff
    store = S3Store("recordings", location(bucket, versioned=True), s3_client)

    _, outcomes = run(store, older_than(cutoff))

    versions, markers = all_versions(s3_client, bucket)
    assert affected(outcomes) == 2 and markers == []
    assert sorted(k for k, _ in versions) == [renewed, renewed]


def test_a_batch_never_splits_the_versions_of_one_key(s3_client, make_bucket) -> None:
    bucket = make_bucket(versioned=True)
    for key, n in (("a.wav", 2), ("b.wav", 7), ("c.wav", 2)):
        for _ in range(n):
            s3_client.put_object(Bucket=bucket, Key=f"tenants/{ACCOUNT}/recordings/{key}", Body=b"v")
    store = S3Store("recordings", location(bucket, versioned=True), s3_client, batch_size=5, page_size=3)

    batches = list(store.batches(everything()))

    assert [b.count for b in batches] == [2, 7, 2]
    assert [len({k for k, _ in b.items}) for b in batches] == [1, 1, 1]


# -- resume and count ----------------------------------------------------------------------------

@pytest.mark.parametrize("versioned", [False, True], ids=["plain", "versioned"])
def test_resuming_from_a_batch_upper_continues_without_repeating_or_skipping(s3_client, make_bucket, versioned) -> None:
    bucket = make_bucket(versioned=versioned)
    keys = [f"tenants/{ACCOUNT}/recordings/{i:04}.wav" for i in range(240)]
    put_all(s3_client, bucket, keys)
    if versioned:
        put_all(s3_client, bucket, keys[::3])  # a second version of every third key
    everything_before = all_versions(s3_client, bucket)[0]
    store = S3Store("recordings", location(bucket, versioned=versioned), s3_client, batch_size=30, chunk_size=7,
                    page_size=11)

    first_run = []
    for batch in store.batches(everything()):  # the run dies after its third batch
        store.delete(batch)
        first_run.append(batch)
        if len(first_run) == 3:
            break
    second_run, outcomes = run(store, everything(), after=first_run[-1].upper)

    assert second_run[0].after == first_run[-1].upper
    items = [item for b in first_run + second_run for item in b.items]
    assert len(items) == len(set(items)) == len(everything_before)
    assert {k for k, _ in items} == set(keys)
    assert all_versions(s3_client, bucket) == ([], [])
    assert run(store, everything(), after=second_run[-1].upper) == ([], [])  # a finished run does nothing


def test_count_within_after_and_upper_is_exact(s3_client, make_bucket) -> None:
    bucket = make_bucket(versioned=True)
    keys = [f"tenants/{ACCOUNT}/recordings/{i:04}.wav" for i in range(120)]
    put_all(s3_client, bucket, keys)
    put_all(s3_client, bucket, keys[::2])
    store = S3Store("recordings", location(bucket, versioned=True), s3_client, batch_size=40, page_size=13)
    batches = list(store.batches(everything()))

    assert len(batches) > 3 and store.count(everything()) == sum(b.count for b in batches) == 180
    for i, batch in enumerate(batches):
        assert store.count(everything(), batch.after, batch.upper) == batch.count
        assert store.count(everything(), None, batch.upper) == sum(b.count for b in batches[:i + 1])

    # a crash halfway through the second batch: count tells how much of it is still there
    crashed = batches[1]
    half = list(crashed.items)[: crashed.count // 2]
    s3_client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k, "VersionId": v} for k, v in half],
                                                    "Quiet": True})
    assert store.count(everything(), crashed.after, crashed.upper) == crashed.count - len(half)
    assert store.count(everything(), batches[0].after, batches[0].upper) == batches[0].count
    assert store.count(everything(), crashed.upper, None) == 180 - sum(b.count for b in batches[:2])


# -- Object Lock ---------------------------------------------------------------------------------

def test_object_lock_is_reported_as_retained_with_its_retain_until_date(s3_client, make_bucket) -> None:
    bucket = make_bucket(object_lock=True)
    prefix = f"tenants/{ACCOUNT}/recordings/"
    soon = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
    later = soon + timedelta(days=335)
    s3_client.put_object(Bucket=bucket, Key=prefix + "c1", Body=b"x", ObjectLockMode="COMPLIANCE",
                         ObjectLockRetainUntilDate=later)
    s3_client.put_object(Bucket=bucket, Key=prefix + "c2", Body=b"x", ObjectLockMode="COMPLIANCE",
                         ObjectLockRetainUntilDate=later)
    s3_client.put_object(Bucket=bucket, Key=prefix + "g1", Body=b"x", ObjectLockMode="GOVERNANCE",
                         ObjectLockRetainUntilDate=soon)
    s3_client.put_object(Bucket=bucket, Key=prefix + "h1", Body=b"x", ObjectLockLegalHoldStatus="ON")
    s3_client.delete_object(Bucket=bucket, Key=prefix + "c1")  # a marker on a locked key can go
    free = [prefix + f"f{i}" for i in range(5)]
    put_all(s3_client, bucket, free + free[:2])
    store = S3Store("recordings", location(bucket, versioned=True), s3_client, chunk_size=3)

    _, outcomes = run(store, everything())

    expected = (Retained("object_lock_legal_hold", 1, None), Retained("object_lock_retention", 1, soon),
                Retained("object_lock_retention", 2, later))
    assert retained_in(outcomes) == expected
    assert affected(outcomes) == 7 + 1  # the free versions and the delete marker
    versions, markers = all_versions(s3_client, bucket)
    assert markers == [] and sorted(k for k, _ in versions) == [prefix + n for n in ("c1", "c2", "g1", "h1")]
    residue = store.verify(everything())
    assert residue.remaining == 4 and residue.retained == expected and residue.clean


def test_access_denied_without_object_lock_raises_with_counts_and_no_key(s3_client, make_bucket) -> None:
    bucket = make_bucket()
    keys = [f"tenants/{ACCOUNT}/recordings/jane.doe@example.com-{i}.wav" for i in range(10)]
    put_all(s3_client, bucket, keys)
    s3_client.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Deny", "Principal": "*", "Action": "s3:DeleteObject",
        "Resource": f"arn:aws:s3:::{bucket}/{keys[3]}"}]}))
    store = S3Store("recordings", location(bucket), s3_client)
    batch = next(iter(store.batches(everything())))

    with pytest.raises(S3StoreError) as raised:
        store.delete(batch)

    message = str(raised.value)
    assert "9 deleted" in message and "1 refused (1 AccessDenied)" in message and ACCOUNT in message
    assert "jane.doe" not in message and raised.value.__cause__ is None
    assert current_keys(s3_client, bucket) == {keys[3]}
    assert store.count(everything(), batch.after, batch.upper) == 1
    assert not store.verify(everything()).clean


# -- guard rails ---------------------------------------------------------------------------------

def test_a_plain_location_over_a_versioned_bucket_is_refused_before_any_deletion(s3_client, make_bucket) -> None:
    bucket = make_bucket(versioned=True)
    put_all(s3_client, bucket, [f"tenants/{ACCOUNT}/recordings/a.wav"])
    store = S3Store("recordings", location(bucket, versioned=False), s3_client)
    batch = PendingBatch(None, json.dumps([f"tenants/{ACCOUNT}/recordings/a.wav", None]), 1,
                         ((f"tenants/{ACCOUNT}/recordings/a.wav", None),))

    for attempt in (lambda: list(store.batches(everything())), lambda: store.delete(batch),
                    lambda: store.verify(everything())):
        with pytest.raises(ValueError, match="versioning Enabled, but the location says versioned: false"):
            attempt()
    assert all_versions(s3_client, bucket)[1] == []  # not even a delete marker


def test_a_batch_from_another_location_is_refused(s3_client, make_bucket) -> None:
    store = S3Store("recordings", location(make_bucket()), s3_client)
    stray = PendingBatch(None, "[]", 1, (("tenants/acct_1/invoices/1.pdf", None),))
    with pytest.raises(ValueError, match="outside"):
        store.delete(stray)


def test_anonymize_is_refused_for_objects(s3_client, make_bucket) -> None:
    store = S3Store("recordings", location(make_bucket()), s3_client)
    with pytest.raises(ValueError, match="S3 location recordings: anonymize is not supported for objects; use delete"):
        store.anonymize(PendingBatch(None, "[]", 0, ()))


def test_verify_counts_what_is_left_and_is_not_clean_before_deletion(s3_client, make_bucket) -> None:
    bucket = make_bucket(versioned=True)
    fill = fill_versioned(s3_client, bucket, ACCOUNT, 6)
    residue = S3Store("recordings", location(bucket, versioned=True), s3_client).verify(everything())
    assert residue.remaining == fill and residue.retained == () and not residue.clean


# -- flaky listings (a delegating client injects the faults; every real call still goes over HTTP) --

class FlakyClient:
    """Forwards to a real client, but the first calls of some operations fail or come back empty."""

    def __init__(self, client, **faults: list[str]) -> None:
        self._client, self._faults, self._lock = client, faults, threading.Lock()
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str):
        real = getattr(self._client, name)
        if name not in self._faults:
            return real

        def call(**params):
            with self._lock:
                self.calls[name] = self.calls.get(name, 0) + 1
                fault = self._faults[name].pop(0) if self._faults[name] else None
            if fault == "empty":
                return {"IsTruncated": False, "Versions": [], "DeleteMarkers": [], "Contents": []}
            if fault in ("500", "503"):
                code = {"500": "InternalError", "503": "SlowDown"}[fault]
                raise ClientError({"Error": {"Code": code, "Message": f"try {params.get('Key', '')}"},
                                   "ResponseMetadata": {"HTTPStatusCode": int(fault)}}, name)
            return real(**params)

        return call


def test_verify_does_not_trust_a_single_empty_listing(s3_client, make_bucket) -> None:
    bucket = make_bucket(versioned=True)
    fill = fill_versioned(s3_client, bucket, ACCOUNT, 9)
    flaky = FlakyClient(s3_client, list_object_versions=["empty", "500"])
    residue = S3Store("recordings", location(bucket, versioned=True), flaky).verify(everything())
    assert residue.remaining == fill and flaky.calls["list_object_versions"] >= 4


def test_throttling_is_retried_and_no_key_reaches_a_log_line(s3_client, make_bucket, caplog) -> None:
    bucket = make_bucket(versioned=True)
    keys = [f"tenants/{ACCOUNT}/recordings/jane.doe@example.com-{i}.wav" for i in range(12)]
    put_all(s3_client, bucket, keys)
    flaky = FlakyClient(s3_client, delete_objects=["503", "500"], list_object_versions=["503"])
    store = S3Store("recordings", location(bucket, versioned=True), flaky, chunk_size=5)

    with caplog.at_level(logging.DEBUG, logger="retention"):
        _, outcomes = run(store, everything())
        residue = store.verify(everything())

    assert affected(outcomes) == 12 and residue.remaining == 0
    assert "SlowDown" in caplog.text and "retry" in caplog.text
    assert "jane.doe" not in caplog.text and "example.com" not in caplog.text


def test_a_versioned_resume_over_a_vanished_marker_lists_from_the_prefix_again(s3_client, make_bucket) -> None:
    bucket = make_bucket(versioned=True)
    keys = [f"tenants/{ACCOUNT}/recordings/{i:03}.wav" for i in range(12)]
    put_all(s3_client, bucket, keys)
    store = S3Store("recordings", location(bucket, versioned=True), s3_client, batch_size=4, page_size=5)
    first = next(iter(store.batches(everything())))
    store.delete(first)  # the cursor's own version is gone now: moto answers its marker with an empty page

    rest = list(store.batches(everything(), after=first.upper))

    assert [k for b in rest for k, _ in b.items] == keys[4:]


# -- size and export -----------------------------------------------------------------------------

class SlowListing:
    """The client, with every ListObjectsV2 call ``delay`` seconds slower: a listing-bound endpoint."""

    def __init__(self, client, delay: float) -> None:
        self._client, self._delay = client, delay

    def list_objects_v2(self, **params):
        time.sleep(self._delay)
        return self._client.list_objects_v2(**params)

    def __getattr__(self, name):
        return getattr(self._client, name)


def test_when_listing_is_the_slow_side_each_page_is_deleted_as_soon_as_it_is_listed(s3_client, make_bucket) -> None:
    bucket = make_bucket()
    keys = [f"tenants/{ACCOUNT}/recordings/{i:05}.wav" for i in range(2100)]
    put_all(s3_client, bucket, keys)
    store = S3Store("recordings", location(bucket), SlowListing(s3_client, delay=0.3))

    batches, outcomes = run(store, everything())

    assert [b.count for b in batches] == [1000, 1000, 100] and affected(outcomes) == 2100
    assert current_keys(s3_client, bucket) == set()


def test_when_deletion_is_the_slow_side_listed_pages_join_one_batch(s3_client, make_bucket) -> None:
    bucket = make_bucket()
    keys = [f"tenants/{ACCOUNT}/recordings/{i:05}.wav" for i in range(2100)]
    put_all(s3_client, bucket, keys)
    store = S3Store("recordings", location(bucket), s3_client)

    listed: list[str] = []
    events = [f"after-call.s3.{operation}" for operation in ("ListObjectVersions", "ListObjectsV2")]
    count_page = lambda **kw: listed.append("page")  # noqa: E731
    for event in events:
        s3_client.meta.events.register(event, count_page)
    try:
        pending = store.batches(everything())
        first = next(pending)
        deadline = time.monotonic() + 60  # a slow delete: meanwhile the background listing reaches the prefix's end
        while len(listed) < 3 and time.monotonic() < deadline:  # three pages of 1,000, however loaded the machine
            time.sleep(0.05)
        time.sleep(0.5)  # the last page's hand-over to the batching side
        rest = list(pending)
    finally:
        for event in events:
            s3_client.meta.events.unregister(event, count_page)

    assert first.count >= 1000 and [b.count for b in rest] == ([2100 - first.count] if first.count < 2100 else [])


def test_a_batch_of_a_few_thousand_objects_goes_in_concurrent_delete_calls(s3_client, make_bucket) -> None:
    bucket = make_bucket()
    keys = [f"tenants/{ACCOUNT}/recordings/{i:05}.wav" for i in range(2100)]  # three DeleteObjects calls
    put_all(s3_client, bucket, keys + [f"tenants/acct_2/recordings/{i}.wav" for i in range(50)])
    store = S3Store("recordings", location(bucket), s3_client)
    calls: list[str] = []
    s3_client.meta.events.register("before-call.s3.DeleteObjects",
                                   lambda **kw: calls.append(threading.current_thread().name))
    try:
        outcome = store.delete(PendingBatch(None, json.dumps([keys[-1], None]), len(keys),
                                            tuple((k, None) for k in keys)))
    finally:
        s3_client.meta.events.unregister("before-call.s3.DeleteObjects")

    assert outcome.affected == 2100 and len(calls) == 3 and len(set(calls)) >= 2
    assert current_keys(s3_client, bucket, f"tenants/{ACCOUNT}/") == set()
    assert len(current_keys(s3_client, bucket)) == 50
    assert store.verify(everything()).remaining == 0


def test_export_writes_every_matching_object(s3_client, make_bucket, tmp_path) -> None:
    bucket = make_bucket()
    due = {stamped(CUTOFF - timedelta(days=d), f"{d}.txt"): f"day {d}".encode() for d in range(1, 6)}
    young = stamped(CUTOFF + timedelta(seconds=1))
    for key, body in [*due.items(), (young, b"young"), ("tenants/acct_2/attachments/x/y", b"other")]:
        s3_client.put_object(Bucket=bucket, Key=key, Body=body)
    store = S3Store("attachments", location(bucket, template=ATTACHMENTS, timestamp=SECONDS), s3_client)

    assert store.export(older_than(CUTOFF), tmp_path / "out") == 5

    out = tmp_path / "out"
    written = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert written == due
    assert len(current_keys(s3_client, bucket)) == 7  # export deletes nothing


def test_export_of_a_versioned_bucket_writes_current_versions_and_skips_deleted_keys(s3_client, make_bucket,
                                                                                    tmp_path) -> None:
    bucket = make_bucket(versioned=True)
    prefix = f"tenants/{ACCOUNT}/recordings/"
    for key, bodies in (("kept.wav", [b"old", b"new"]), ("gone.wav", [b"old"])):
        for body in bodies:
            s3_client.put_object(Bucket=bucket, Key=prefix + key, Body=body)
    s3_client.delete_object(Bucket=bucket, Key=prefix + "gone.wav")
    store = S3Store("recordings", location(bucket, versioned=True), s3_client)

    assert store.export(everything(), tmp_path) == 1
    assert (tmp_path / prefix / "kept.wav").read_bytes() == b"new"
    assert not (tmp_path / prefix / "gone.wav").exists()


def test_export_refuses_a_key_that_would_leave_the_folder(s3_client, make_bucket, tmp_path) -> None:
    bucket = make_bucket()
    s3_client.put_object(Bucket=bucket, Key=f"tenants/{ACCOUNT}/recordings/../../../escape", Body=b"x")
    store = S3Store("recordings", location(bucket), s3_client)
    with pytest.raises(ValueError, match="would leave the export folder"):
        store.export(everything(), tmp_path / "out")
    assert not (tmp_path / "escape").exists()
