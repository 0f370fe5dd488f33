"""Objects under one account's S3 prefix: list them in key order, delete every version, verify the rest.

Selection
    An object matches a Selector when its key is under ``spec.prefix(account_id)`` and, with a cutoff,
    its time is at or before the cutoff (inclusive). The time is ``LastModified`` or one "/"-separated
    key segment parsed with a strptime format (UTC unless the format carries an offset). A segment
    coarser than a second ("%Y-%m-%d") names a whole period, and the object matches only once all of
    that period is at or before the cutoff: a day-dated object is never taken for midnight. A key
    whose segment does not parse never matches (what cannot be dated is never deleted); ``verify``
    counts it as remaining and reports it as ``Retained("undated_key")``.

Versioned buckets
    The unit is the key. A key matches when its newest version or delete marker does, and then every
    version and delete marker of it is deleted by version id (a DeleteObjects without version ids only
    adds a marker). Counts are versions + markers. A batch never splits a key, so a batch can exceed
    its target size only by the versions of one key.

Cursors
    ``after`` / ``upper`` are JSON ``[key, version_id]`` of the last record of a batch (version_id is
    null on unversioned buckets); ``batches(after=upper)`` continues with the next key. They hold an
    object key, so they are positions to store, never text to log.

Object Lock
    A version under retention or legal hold that DeleteObjects refuses with AccessDenied is reported as
    ``Retained("object_lock_retention" | "object_lock_legal_hold")`` with its retain-until date. Any
    other per-key error raises ``S3StoreError``. Governance retention is never bypassed.

No key ever enters a log line or an exception message (keys can carry personal data): messages name
the location, the bucket, the account id and counts. botocore exceptions are not chained, because
theirs can quote an endpoint URL or a resource ARN that contains a key.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import logging
import os
import queue
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, ConnectionError as BotoConnectionError, HTTPClientError
from botocore.utils import parse_timestamp
from tenacity import Retrying, retry_if_exception, stop_after_attempt, stop_after_delay, wait_exponential_jitter

from retention.rules.inventory import KeySegmentTime, S3Location
from retention.stores.base import Outcome, PendingBatch, Residue, Retained, Selector

log = logging.getLogger(__name__)

PAGE_SIZE = 1000  # S3's maximum for one listing page
DELETE_CHUNK = 1000  # S3's maximum for one DeleteObjects call
BATCH_SIZE = 8 * DELETE_CHUNK  # at most per PendingBatch: eight DeleteObjects calls, sent concurrently
WORKERS = 8  # concurrent DeleteObjects / HEAD / GET calls (botocore's pool holds 10 connections)

RETRY_ATTEMPTS = 6  # per S3 call, on throttling, 5xx and dropped connections
RETRY_WAIT_INITIAL = 0.2  # seconds, doubled per attempt, with jitter
RETRY_WAIT_MAX = 5.0
RETRY_DEADLINE = 90.0  # seconds per call, whatever the attempt count
KEY_ATTEMPTS = 4  # DeleteObjects rounds for keys the server reported as transiently failed
VERIFY_LISTINGS = 6  # verify lists until two consecutive listings agree, at most this often
MAX_RESCANS = 4  # a listing that lost its place may restart from the prefix this often

_TRANSIENT_CODES = frozenset({
    "SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException",
    "RequestTimeout", "InternalError", "ServiceUnavailable", "500", "502", "503", "504",
})
_GONE_CODES = frozenset({"404", "NoSuchKey", "NoSuchVersion"})
_MARKER_CODES = frozenset({"405", "MethodNotAllowed"})  # HEAD on a delete marker's version id
_LOCK_MODES = frozenset({"COMPLIANCE", "GOVERNANCE"})

DUE, YOUNG, UNDATED = "due", "young", "undated"
PAGE_END = "page_end"  # not a verdict: marks where a listing page ended


class S3StoreError(RuntimeError):
    """An S3 call or a deletion failed; the message names location, bucket, account and counts only."""


# -- records, cursors and key times ---------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Entry:
    """One listed object, version or delete marker."""

    key: str
    version_id: str | None
    last_modified: datetime
    is_marker: bool = False
    is_latest: bool = True


@dataclass(frozen=True, slots=True)
class _Cursor:
    key: str
    version_id: str | None


def _encode_cursor(entry: _Entry) -> str:
    return json.dumps([entry.key, entry.version_id], separators=(",", ":"))


class KeyClock:
    """Dates a key from one of its segments: the latest instant the segment can stand for, or None.

    The precision of the format is found by round-tripping a probe instant through it: "%Y-%m-%d"
    keeps the day, so "2025-03-01" stands for up to 2025-03-01T23:59:59.999999Z. Seconds and finer
    are instants (as LastModified is). A format that loses the hour of a PM time ("%I" without "%p")
    counts as day-precise, so it errs towards keeping.
    """

    _PROBE = datetime(2001, 11, 23, 16, 35, 47, 123456, tzinfo=UTC)

    def __init__(self, spec: KeySegmentTime, where: str) -> None:
        self.segment = spec.key_segment
        self.format = spec.format
        try:
            back = _as_utc(datetime.strptime(self._PROBE.strftime(self.format), self.format))
        except ValueError as exc:
            raise ValueError(f"{where}: timestamp format {self.format!r} does not parse what it prints "
                             f"({exc}); use strptime directives such as %Y-%m-%d") from None
        precision = None
        for unit in ("year", "month", "day", "hour", "minute", "second"):
            if getattr(back, unit) != getattr(self._PROBE, unit):
                break
            precision = unit  # the finest unit that survives along with every coarser one
        if precision is None:
            raise ValueError(f"{where}: timestamp format {self.format!r} carries no year; "
                             "a key segment must date the object")
        self.precision = precision

    def latest(self, key: str) -> datetime | None:
        parts = key.split("/")
        if self.segment >= len(parts):
            return None
        try:
            start = _as_utc(datetime.strptime(parts[self.segment], self.format))
        except ValueError:
            return None
        return _period_end(start, self.precision)


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _period_end(parsed: datetime, precision: str) -> datetime:
    """The last microsecond of the period ``parsed`` falls in; seconds and finer are instants."""
    if precision == "second":
        return parsed
    units = ("year", "month", "day", "hour", "minute")
    kept = units.index(precision) + 1
    start = parsed.replace(**{u: v for u, v in (("month", 1), ("day", 1), ("hour", 0), ("minute", 0))
                              if u not in units[:kept]}, second=0, microsecond=0)
    if precision == "year":
        following = start.replace(year=start.year + 1)
    elif precision == "month":
        following = start + timedelta(days=calendar.monthrange(start.year, start.month)[1])
    else:
        following = start + timedelta(**{f"{precision}s": 1})
    return following - timedelta(microseconds=1)


# -- the store -------------------------------------------------------------------------------------

class S3Store:
    """The Store protocol over one S3 location (``systems.yaml`` kind: s3).

    ``client`` is a ready boto3 S3 client; the caller builds it from the location's Airflow Connection
    (``S3Hook(aws_conn_id=spec.conn_id).get_conn()``). This class never creates credentials.
    """

    def __init__(self, location_id: str, spec: S3Location, client: Any, *, batch_size: int = BATCH_SIZE,
                 chunk_size: int = DELETE_CHUNK, page_size: int = PAGE_SIZE, workers: int = WORKERS) -> None:
        if not 1 <= chunk_size <= DELETE_CHUNK or not 1 <= page_size <= PAGE_SIZE:
            raise ValueError(f"S3 location {location_id}: chunk_size and page_size must be 1..1000")
        if batch_size < 1 or workers < 1:
            raise ValueError(f"S3 location {location_id}: batch_size and workers must be positive")
        self.location_id = location_id
        self.spec = spec
        self._client = client
        _parse_timestamps_fast(client)
        self._batch_size = batch_size
        self._chunk_size = chunk_size
        self._page_size = page_size
        self._workers = workers
        where = f"S3 location {location_id}"
        self._clock = KeyClock(spec.timestamp, where) if isinstance(spec.timestamp, KeySegmentTime) else None
        self._versioning_checked = False
        self._lock_enabled: bool | None = None

    # -- Store protocol ----------------------------------------------------------------------------

    def count(self, selector: Selector, after: str | None = None, upper: str | None = None) -> int:
        """Records matching the selector with keys in (after, upper]; versions + markers if versioned."""
        prefix = self._prefix(selector)
        lower, high = self._cursor(after, prefix), self._cursor(upper, prefix)
        self._check_versioning()
        total = 0
        for key, entries, verdict in self._groups(selector, self._pages(prefix, lower, selector.account_id)):
            if high is not None and key > high.key:
                break
            if verdict == DUE:
                total += len(entries)
        return total

    def batches(self, selector: Selector, after: str | None = None) -> Iterator[PendingBatch]:
        """Batches of up to ``batch_size`` records in key order after the cursor; nothing is deleted.

        Listing runs in a background thread up to one batch ahead, so the next batch is being listed
        while the engine deletes the current one. A batch holds what has been listed so far: once it
        fills one DeleteObjects call and no further page is waiting, it goes. When listing is the slow
        side, deletion follows it page by page; when deletion is, pages queue up and batches grow to
        ``batch_size``, deleted by concurrent calls.
        """
        prefix = self._prefix(selector)
        start = self._cursor(after, prefix)
        self._check_versioning()
        lower, items, last = after, [], None
        pages = _Prefetch(self._pages(prefix, start, selector.account_id),
                          ahead=max(1, self._batch_size // self._page_size))
        with pages:
            for _key, entries, verdict in self._groups(selector, pages, mark_page_ends=True):
                full = len(items) + len(entries) > self._batch_size
                listing_behind = verdict == PAGE_END and len(items) >= self._chunk_size and not pages.waiting()
                if items and (full or listing_behind):
                    upper = _encode_cursor(last)
                    yield PendingBatch(lower, upper, len(items), tuple(items))
                    lower, items = upper, []
                if verdict == DUE:
                    items.extend((e.key, e.version_id) for e in entries)
                    last = entries[-1]
            if items:
                yield PendingBatch(lower, _encode_cursor(last), len(items), tuple(items))

    def delete(self, batch: PendingBatch) -> Outcome:
        """DeleteObjects (Quiet) in chunks sent concurrently; every version and marker by version id."""
        pairs, account = self._batch_pairs(batch)
        if not pairs:
            return Outcome(affected=0)
        self._check_versioning()
        chunks = [pairs[i:i + self._chunk_size] for i in range(0, len(pairs), self._chunk_size)]
        results: list[_ChunkResult] = []
        broken: list[str] = []
        with ThreadPoolExecutor(max_workers=min(self._workers, len(chunks)), thread_name_prefix="s3-delete") as pool:
            futures = [pool.submit(self._delete_chunk, chunk, account) for chunk in chunks]
            for future in futures:
                try:
                    results.append(future.result())
                except S3StoreError as exc:
                    broken.append(str(exc))
        retained = Counter()
        failed = Counter()
        for result in results:
            retained.update(result.retained)
            failed.update(result.failed)
        n_retained, n_failed = sum(retained.values()), sum(failed.values())
        affected = sum(r.requested for r in results) - n_retained - n_failed
        where = f"S3 location {self.location_id}: bucket {self.spec.bucket}, account {account}"
        if broken or n_failed:
            unsent = len(pairs) - sum(r.requested for r in results)
            codes = ", ".join(f"{n} {code}" for code, n in sorted(failed.items())) or "none"
            detail = f"; {len(broken)} of {len(chunks)} DeleteObjects calls failed: {broken[0]}" if broken else ""
            raise S3StoreError(
                f"{where}: batch of {len(pairs)} records not fully deleted: {affected} deleted, "
                f"{n_retained} retained under Object Lock, {n_failed} refused ({codes}), {unsent} in calls "
                f"that failed{detail}. Check s3:DeleteObject / s3:DeleteObjectVersion permissions and "
                f"the bucket policy, then resume; count() tells how much of the batch is gone")
        log.info("%s: deleted %d of %d records, %d retained under Object Lock",
                 where, affected, len(pairs), n_retained)
        return Outcome(affected=affected, retained=_retained_tuple(retained))

    def anonymize(self, batch: PendingBatch) -> Outcome:
        raise ValueError(f"S3 location {self.location_id}: anonymize is not supported for objects; use delete")

    def isolate(self, batch: PendingBatch) -> Outcome:
        raise ValueError(f"S3 location {self.location_id}: isolation is for SQL tables (systems.yaml isolate_to)")

    def verify(self, selector: Selector) -> Residue:
        """Re-list until two consecutive listings agree; remaining = matching + undated records."""
        prefix = self._prefix(selector)
        self._check_versioning()
        lockable = self.spec.versioned and self._object_lock_enabled()
        previous: _Snapshot | None = None
        for attempt in range(VERIFY_LISTINGS):
            snapshot = self._snapshot(selector, prefix, collect_lockable=lockable)
            if previous is not None and snapshot.agrees(previous):
                break
            if previous is not None:
                log.warning("S3 location %s: bucket %s, account %s: verification listings disagree "
                            "(%d then %d records); listing again", self.location_id, self.spec.bucket,
                            selector.account_id, previous.total, snapshot.total)
            previous = snapshot
        else:
            raise S3StoreError(
                f"S3 location {self.location_id}: bucket {self.spec.bucket}, account {selector.account_id}: "
                f"{VERIFY_LISTINGS} listings never agreed twice in a row (is something still writing or "
                "deleting under the prefix?); verify again once it has stopped")
        retained: Counter = Counter()
        if snapshot.undated:
            retained[("undated_key", None)] += snapshot.undated
        retained.update(self._locks_of(snapshot.lockable, selector.account_id))
        residue = Residue(remaining=snapshot.due + snapshot.undated, retained=_retained_tuple(retained))
        log.info("S3 location %s: bucket %s, account %s: %d records remain, %d of them retained",
                 self.location_id, self.spec.bucket, selector.account_id, residue.remaining,
                 sum(r.count for r in residue.retained))
        return residue

    def export(self, selector: Selector, sink: Path | str) -> int:
        """Download every matching current object to ``sink / key``; returns how many were written.

        On versioned buckets the current version is exported; a key whose newest entry is a delete
        marker has no current object and is skipped. Keys ending in "/" become folders.
        """
        prefix = self._prefix(selector)
        self._check_versioning()
        root = Path(sink)
        root.mkdir(parents=True, exist_ok=True)
        root = root.resolve()
        account = selector.account_id
        written = 0
        errors: list[str] = []
        inflight: set[Future] = set()

        def collect(done: Iterable[Future]) -> int:
            n = 0
            for future in done:
                try:
                    n += future.result()
                except (S3StoreError, OSError) as exc:
                    errors.append(str(exc) if isinstance(exc, S3StoreError) else type(exc).__name__)
            return n

        with ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="s3-export") as pool:
            for key, entries, verdict in self._groups(selector, self._pages(prefix, None, account)):
                if verdict != DUE:
                    continue
                current = _current(entries)
                if current is None:
                    continue
                inflight.add(pool.submit(self._download, current, self._export_path(root, key, account), account))
                if len(inflight) >= 4 * self._workers:
                    done, inflight = wait(inflight, return_when=FIRST_COMPLETED)
                    written += collect(done)
            written += collect(inflight)
        if errors:
            raise S3StoreError(f"S3 location {self.location_id}: bucket {self.spec.bucket}, account {account}: "
                               f"{len(errors)} objects could not be exported ({written} were): {errors[0]}")
        log.info("S3 location %s: bucket %s, account %s: exported %d objects",
                 self.location_id, self.spec.bucket, account, written)
        return written

    # -- selection ---------------------------------------------------------------------------------

    def _prefix(self, selector: Selector) -> str:
        account = selector.account_id
        if not account or "/" in account or any(ord(c) < 32 for c in account):
            # With no "/" in account ids, one account's prefix can never lie inside another's.
            raise ValueError(f"S3 location {self.location_id}: account id {account!r} cannot name an S3 "
                             "prefix (it must be non-empty, without '/' or control characters)")
        return self.spec.prefix(account)

    def _verdict(self, selector: Selector, key: str, entries: list[_Entry]) -> str:
        if selector.cutoff is None:
            return DUE
        if self._clock is None:
            newest = max(e.last_modified for e in entries)
            return DUE if newest <= selector.cutoff else YOUNG
        latest = self._clock.latest(key)
        if latest is None:
            return UNDATED
        return DUE if latest <= selector.cutoff else YOUNG

    def _groups(self, selector: Selector, pages: Iterable[list[_Entry]], *,
                mark_page_ends: bool = False) -> Iterator[tuple[str | None, list[_Entry], str]]:
        """(key, its entries in listing order, verdict) per key; a key's versions may span pages.

        With ``mark_page_ends``, ``(None, [], PAGE_END)`` follows the keys completed by each page.
        """
        key, group = None, []
        for page in pages:
            for entry in page:
                if self.spec.versioned:
                    if entry.key != key:
                        if group:
                            yield key, group, self._verdict(selector, key, group)
                        key, group = entry.key, []
                    group.append(entry)
                else:  # one entry per key: no need to see the next one first
                    yield entry.key, [entry], self._verdict(selector, entry.key, [entry])
            if mark_page_ends:
                yield None, [], PAGE_END
        if group:
            yield key, group, self._verdict(selector, key, group)

    def _cursor(self, text: str | None, prefix: str) -> _Cursor | None:
        if text is None:
            return None
        try:
            key, version_id = json.loads(text)
            valid = isinstance(key, str) and key.startswith(prefix) and (version_id is None or isinstance(version_id, str))
        except (ValueError, TypeError):
            valid = False
        if not valid:
            raise ValueError(f"S3 location {self.location_id}: the cursor was not issued by this location for "
                             "this account (expected JSON [key, version_id] under the account's prefix)")
        return _Cursor(key, version_id)

    # -- listing -----------------------------------------------------------------------------------

    def _pages(self, prefix: str, after: _Cursor | None, account: str) -> Iterator[list[_Entry]]:
        """Pages of entries in key order (versions newest first), strictly after the cursor's key."""
        if self.spec.versioned:
            return self._version_pages(prefix, after, account)
        return self._object_pages(prefix, after, account)

    def _object_pages(self, prefix: str, after: _Cursor | None, account: str) -> Iterator[list[_Entry]]:
        start_after = after.key if after else None
        while True:
            params: dict[str, Any] = {"Bucket": self.spec.bucket, "Prefix": prefix, "MaxKeys": self._page_size}
            if start_after is not None:
                params["StartAfter"] = start_after
            response = self._request("list_objects_v2", account, **params)
            entries = [_Entry(o["Key"], None, o["LastModified"]) for o in response.get("Contents", ())]
            self._check_listed(entries, prefix, account)
            entries = [e for e in entries if start_after is None or e.key > start_after]
            if entries:
                yield entries
                start_after = entries[-1].key
            if not response.get("IsTruncated"):
                return
            if not entries:
                raise S3StoreError(f"S3 location {self.location_id}: bucket {self.spec.bucket}, account "
                                   f"{account}: the listing reports more objects but returned none")

    def _version_pages(self, prefix: str, after: _Cursor | None, account: str) -> Iterator[list[_Entry]]:
        """ListObjectVersions pages with KeyMarker/VersionIdMarker = the last entry returned.

        A marker version that has been deleted in the meantime (our own last batch, on a resume) makes
        some servers (moto) answer with an empty last page; such a page is trusted only when the marker
        still exists, otherwise listing restarts from the prefix and skips what is behind the cursor.
        """
        last_key = after.key if after else None
        seen: set[str] | None = None  # versions of last_key already yielded; None: all of them
        markers = (after.key, after.version_id) if after and after.version_id else None
        rescans = 0 if markers or after is None else 1  # a cursor without a version: start from the prefix

        def beyond(entry: _Entry) -> bool:
            if last_key is None or entry.key > last_key:
                return True
            return entry.key == last_key and seen is not None and entry.version_id not in seen

        while True:
            params: dict[str, Any] = {"Bucket": self.spec.bucket, "Prefix": prefix, "MaxKeys": self._page_size}
            if markers:
                params.update(KeyMarker=markers[0], VersionIdMarker=markers[1])
            response = self._request("list_object_versions", account,
                                     tolerate=frozenset({"InvalidArgument"}) if markers else frozenset(), **params)
            truncated = bool(response.get("IsTruncated")) and "Error" not in response
            entries = _version_entries(response)
            self._check_listed(entries, prefix, account)
            fresh = [e for e in entries if beyond(e)]
            lost = "Error" in response or (
                markers is not None and not fresh and not truncated and not self._exists(*markers, account=account))
            if lost:
                rescans += 1
                if rescans > MAX_RESCANS:
                    raise S3StoreError(
                        f"S3 location {self.location_id}: bucket {self.spec.bucket}, account {account}: the "
                        f"version listing lost its place {MAX_RESCANS} times (objects are changing under "
                        "the prefix); run again once writes and deletes there have stopped")
                markers = None  # list again from the start of the prefix, skipping what is behind us
                continue
            if fresh:
                yield fresh
                for entry in fresh:
                    if entry.key != last_key:
                        last_key, seen = entry.key, set()
                    if seen is not None:
                        seen.add(entry.version_id)
            if not truncated:
                return
            markers = (response["NextKeyMarker"], response["NextVersionIdMarker"])

    def _check_listed(self, entries: list[_Entry], prefix: str, account: str) -> None:
        if any(not e.key.startswith(prefix) for e in entries):
            raise S3StoreError(f"S3 location {self.location_id}: bucket {self.spec.bucket} listed keys outside "
                               f"the prefix of account {account}; refusing to act on that listing")

    def _exists(self, key: str, version_id: str | None, *, account: str) -> bool:
        return self._head(key, version_id, account) is not None

    def _head(self, key: str, version_id: str | None, account: str) -> dict | None:
        """HEAD one version: its headers, {"DeleteMarker": True} for a marker, None when it is gone."""
        params = {"Bucket": self.spec.bucket, "Key": key}
        if version_id is not None:
            params["VersionId"] = version_id
        response = self._request("head_object", account, tolerate=_GONE_CODES | _MARKER_CODES, **params)
        code = response.get("Error", {}).get("Code")
        if code in _GONE_CODES:
            return None
        if code in _MARKER_CODES:
            return {"DeleteMarker": True}
        return response

    # -- deletion ----------------------------------------------------------------------------------

    def _batch_pairs(self, batch: PendingBatch) -> tuple[list[tuple[str, str | None]], str]:
        pairs = list(batch.items or ())
        template = self.spec.key_template
        head, tail = template.split("{account_id}")
        accounts = set()
        for pair in pairs:
            key, version_id = pair
            if not (isinstance(key, str) and key.startswith(head) and tail in key[len(head):]):
                raise ValueError(f"S3 location {self.location_id}: the batch holds a key outside "
                                 f"{template!r}; refusing to delete it")
            accounts.add(key[len(head):].split(tail, 1)[0])
            if self.spec.versioned and not version_id:
                raise ValueError(f"S3 location {self.location_id}: a batch for a versioned bucket must name "
                                 "every version; a delete without a version id only adds a delete marker")
        if len(accounts) > 1:
            raise ValueError(f"S3 location {self.location_id}: the batch mixes {len(accounts)} accounts; "
                             "a batch covers one account's prefix")
        return pairs, next(iter(accounts), "-")

    def _delete_chunk(self, pairs: list[tuple[str, str | None]], account: str) -> _ChunkResult:
        result = _ChunkResult(requested=len(pairs))
        pending = pairs
        transient: Counter = Counter()
        for attempt in range(KEY_ATTEMPTS):
            objects = [{"Key": k, "VersionId": v} if v is not None else {"Key": k} for k, v in pending]
            response = self._request("delete_objects", account, Bucket=self.spec.bucket,
                                     Delete={"Objects": objects, "Quiet": True})
            failures = self._failed_pairs(pending, response.get("Errors") or (), account)
            transient = Counter()
            retry = []
            for pair, (code, head) in failures.items():
                if code in _TRANSIENT_CODES:
                    transient[code] += 1
                    retry.append(pair)
                    continue
                lock = _lock_of(head) if code == "AccessDenied" else None
                if lock is not None:
                    result.retained[lock] += 1
                else:
                    result.failed[code] += 1
            pending = retry
            if not pending:
                break
            log.warning("S3 location %s: bucket %s, account %s: %d keys failed transiently, round %d of %d",
                        self.location_id, self.spec.bucket, account, len(pending), attempt + 1, KEY_ATTEMPTS)
            time.sleep(min(RETRY_WAIT_MAX, RETRY_WAIT_INITIAL * 2 ** attempt))
        result.failed.update(transient)
        return result

    def _failed_pairs(self, pending: list[tuple[str, str | None]], errors: Iterable[dict],
                      account: str) -> dict[tuple[str, str | None], tuple[str, dict | None]]:
        """Which requested records an Errors list names, each with its code and (for AccessDenied) HEAD.

        S3 names the version of a failed key; moto does not, so for a versioned request without one
        every requested version of that key that still exists counts as failed.
        """
        by_key: dict[str, list[tuple[str, str | None]]] = {}
        for pair in pending:
            by_key.setdefault(pair[0], []).append(pair)
        failed: dict[tuple[str, str | None], tuple[str, dict | None]] = {}
        checked: set[tuple[str, str | None]] = set()
        for error in errors:
            key, version_id = error.get("Key"), error.get("VersionId")
            code = str(error.get("Code") or "Unknown")
            if not self.spec.versioned:
                named, candidates = True, [(key, None)]
            elif version_id is not None:
                named, candidates = True, [(key, version_id)]
            else:
                named, candidates = False, by_key.get(key, [])
            if not candidates or any(pair not in by_key.get(key, ()) for pair in candidates):
                raise S3StoreError(f"S3 location {self.location_id}: bucket {self.spec.bucket}, account "
                                   f"{account}: DeleteObjects reported an error ({code}) for a record not sent")
            for pair in candidates:
                if pair in checked:
                    continue
                checked.add(pair)
                head = None
                if code == "AccessDenied" or not named:
                    head = self._head(*pair, account)
                    if head is None:
                        continue  # not there any more: it did go
                failed[pair] = (code, head)
        return failed

    # -- verification ------------------------------------------------------------------------------

    def _snapshot(self, selector: Selector, prefix: str, collect_lockable: bool) -> _Snapshot:
        snap = _Snapshot()
        digest = hashlib.sha256()
        for key, entries, verdict in self._groups(selector, self._pages(prefix, None, selector.account_id)):
            if verdict == YOUNG:
                continue
            for entry in entries:
                digest.update(f"{verdict}\0{key}\0{entry.version_id}\0{entry.is_marker}\n".encode())
            if verdict == UNDATED:
                snap.undated += len(entries)
                continue
            snap.due += len(entries)
            if collect_lockable:
                snap.lockable.extend((e.key, e.version_id) for e in entries if not e.is_marker)
        snap.digest = digest.hexdigest()
        return snap

    def _locks_of(self, pairs: list[tuple[str, str | None]], account: str) -> Counter:
        found: Counter = Counter()
        if not pairs:
            return found
        with ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="s3-verify") as pool:
            for lock in pool.map(lambda pair: _lock_of(self._head(*pair, account)), pairs):
                if lock is not None:
                    found[lock] += 1
        return found

    def _object_lock_enabled(self) -> bool:
        if self._lock_enabled is None:
            response = self._request("get_object_lock_configuration", None, Bucket=self.spec.bucket,
                                     tolerate=frozenset({"ObjectLockConfigurationNotFoundError", "AccessDenied"}))
            code = response.get("Error", {}).get("Code")
            if code == "ObjectLockConfigurationNotFoundError":
                self._lock_enabled = False
            elif code == "AccessDenied":
                self._lock_enabled = True  # cannot tell: look every remaining version up
            else:
                enabled = response.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled")
                self._lock_enabled = enabled == "Enabled"
        return self._lock_enabled

    def _check_versioning(self) -> None:
        """Refuse a location that says unversioned over a bucket that keeps versions."""
        if self._versioning_checked:
            return
        status = self._request("get_bucket_versioning", None, Bucket=self.spec.bucket).get("Status")
        if status in ("Enabled", "Suspended") and not self.spec.versioned:
            raise ValueError(
                f"S3 location {self.location_id}: bucket {self.spec.bucket} has versioning {status}, but the "
                "location says versioned: false, and a delete without version ids only hides objects behind "
                "delete markers; set versioned: true for this location in systems.yaml")
        self._versioning_checked = True

    # -- export ------------------------------------------------------------------------------------

    def _export_path(self, root: Path, key: str, account: str) -> Path:
        relative = PurePosixPath(key)
        if relative.is_absolute() or ".." in relative.parts:
            raise ValueError(f"S3 location {self.location_id}: an object key of account {account} would "
                             "leave the export folder ('..' or a leading '/'); export refused")
        return root.joinpath(*relative.parts)

    def _download(self, entry: _Entry, target: Path, account: str) -> int:
        if entry.key.endswith("/"):
            target.mkdir(parents=True, exist_ok=True)
            return 1
        target.parent.mkdir(parents=True, exist_ok=True)
        params = {"Bucket": self.spec.bucket, "Key": entry.key}
        if entry.version_id is not None:
            params["VersionId"] = entry.version_id

        def fetch() -> None:
            body = self._client.get_object(**params)["Body"]
            fd, temp = tempfile.mkstemp(dir=target.parent, prefix=".part-")
            try:
                with os.fdopen(fd, "wb") as out, body:
                    for chunk in body.iter_chunks(1 << 20):
                        out.write(chunk)
                os.replace(temp, target)
            except BaseException:
                Path(temp).unlink(missing_ok=True)
                raise

        self._call("get_object", account, fetch)
        return 1

    # -- S3 calls ----------------------------------------------------------------------------------

    def _request(self, operation: str, account: str | None, *, tolerate: frozenset[str] = frozenset(),
                 **params: Any) -> dict:
        """One S3 call with bounded retries. A tolerated error code comes back as {"Error": {"Code"}}."""
        return self._call(operation, account, lambda: getattr(self._client, operation)(**params), tolerate)

    def _call(self, operation: str, account: str | None, fn: Callable[[], Any],
              tolerate: frozenset[str] = frozenset()) -> Any:
        where = f"S3 location {self.location_id}: bucket {self.spec.bucket}"
        if account is not None:
            where += f", account {account}"

        def before_sleep(state: Any) -> None:
            log.warning("%s: %s failed (%s), retry %d of %d", where, operation,
                        _describe(state.outcome.exception()), state.attempt_number, RETRY_ATTEMPTS - 1)

        retrying = Retrying(retry=retry_if_exception(_is_transient), reraise=True, before_sleep=before_sleep,
                            wait=wait_exponential_jitter(multiplier=RETRY_WAIT_INITIAL, max=RETRY_WAIT_MAX),
                            stop=stop_after_attempt(RETRY_ATTEMPTS) | stop_after_delay(RETRY_DEADLINE))
        try:
            return retrying(fn)
        except ClientError as exc:
            code = _code(exc)
            if code in tolerate:
                return {"Error": {"Code": code}}
            raise S3StoreError(f"{where}: {operation} failed ({_describe(exc)})") from None
        except BotoCoreError as exc:
            raise S3StoreError(f"{where}: {operation} failed ({_describe(exc)})") from None


# -- helpers -----------------------------------------------------------------------------------------

@dataclass
class _ChunkResult:
    requested: int
    retained: Counter = field(default_factory=Counter)  # (reason, retain_until) -> records
    failed: Counter = field(default_factory=Counter)  # error code -> records


@dataclass
class _Snapshot:
    due: int = 0
    undated: int = 0
    digest: str = ""
    lockable: list[tuple[str, str | None]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.due + self.undated

    def agrees(self, other: _Snapshot) -> bool:
        return (self.due, self.undated, self.digest) == (other.due, other.undated, other.digest)


def _version_entries(response: dict) -> list[_Entry]:
    entries = [_Entry(v["Key"], v.get("VersionId"), v["LastModified"], False, bool(v.get("IsLatest")))
               for v in response.get("Versions", ())]
    entries += [_Entry(m["Key"], m.get("VersionId"), m["LastModified"], True, bool(m.get("IsLatest")))
                for m in response.get("DeleteMarkers", ())]
    # The response splits versions and markers into two lists; put them back in listing order
    # (key, then newest first). sort() is stable, so equal times keep the server's order.
    entries.sort(key=lambda e: (e.key, -e.last_modified.timestamp()))
    return entries


def _current(entries: list[_Entry]) -> _Entry | None:
    latest = next((e for e in entries if e.is_latest), entries[0])
    return None if latest.is_marker else latest


def _lock_of(head: dict | None) -> tuple[str, datetime | None] | None:
    """(reason, retain_until) when the HEAD of a version shows an active Object Lock, else None."""
    if head is None or head.get("DeleteMarker"):
        return None
    if head.get("ObjectLockLegalHoldStatus") == "ON":
        return ("object_lock_legal_hold", None)
    until = head.get("ObjectLockRetainUntilDate")
    if head.get("ObjectLockMode") in _LOCK_MODES and until is not None:
        until = until.astimezone(UTC)
        if until > datetime.now(UTC):
            return ("object_lock_retention", until)
    return None


def _retained_tuple(counts: Counter) -> tuple[Retained, ...]:
    far = datetime.max.replace(tzinfo=UTC)
    return tuple(Retained(reason, n, until)
                 for (reason, until), n in sorted(counts.items(), key=lambda kv: (kv[0][0], kv[0][1] or far)))


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code") or exc.response.get("ResponseMetadata", {})
               .get("HTTPStatusCode", "Unknown"))


def _describe(exc: BaseException | None) -> str:
    """Error code and HTTP status, or the exception class: never the message (it can quote a key)."""
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return f"{_code(exc)}, HTTP {status}" if status else _code(exc)
    return type(exc).__name__


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return _code(exc) in _TRANSIENT_CODES or status >= 500
    return isinstance(exc, (HTTPClientError, BotoConnectionError))


def _parse_timestamps_fast(client: Any) -> None:
    """Have the client parse LastModified with ``datetime.fromisoformat``.

    botocore parses every timestamp with dateutil (~0.1 ms each): parsing a 1,000-key listing page
    then costs the client more than the server spends producing it, and the pipeline waits on it.
    ``set_parser_defaults`` is botocore's hook for this; the factory belongs to the client's session,
    and anything that is not ISO 8601 still goes to botocore's own parser, so results are the same.
    """
    factory = getattr(getattr(client, "_endpoint", None), "_response_parser_factory", None)
    if factory is not None:
        factory.set_parser_defaults(timestamp_parser=_parse_timestamp)


def _parse_timestamp(value: Any) -> datetime:
    try:
        return datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return parse_timestamp(value)


class _Prefetch:
    """Runs a page iterator in a background thread, at most ``ahead`` pages ahead of its consumer."""

    _END = object()

    def __init__(self, pages: Iterator[list[_Entry]], ahead: int) -> None:
        self._pages = pages
        self._queue: queue.Queue = queue.Queue(maxsize=ahead)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="s3-list-prefetch", daemon=True)

    def __enter__(self) -> _Prefetch:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._queue.get(timeout=0.05)  # unblock a producer waiting on a full queue
            except queue.Empty:
                pass

    def waiting(self) -> bool:
        """Whether a listed page is ready to be taken without blocking."""
        return not self._queue.empty()

    def __iter__(self) -> Iterator[list[_Entry]]:
        while True:
            item = self._queue.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def _run(self) -> None:
        try:
            for page in self._pages:
                if not self._put(page):
                    return
            self._put(self._END)
        except BaseException as exc:  # handed to the consumer, raised there
            self._put(exc)
        finally:
            close = getattr(self._pages, "close", None)
            if close is not None:
                close()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False
