"""``S3Store``: the Store protocol over one S3 location, wiring listing, selection, deletion,
verification and export (the package docstring states what is selected and how)."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from pathlib import Path

from retention.rules.inventory import KeySegmentTime, S3Location
from retention.rules.subjects import Subject, normalize
from retention.stores.base import Due, DueSeries, Histogram, Outcome, PendingBatch, Residue, Selector, Tally
from retention.stores.keydates import KeyClock
from retention.stores.s3.calls import S3Calls, S3Client
from retention.stores.s3.deletion import DELETE_CHUNK, Deleter
from retention.stores.s3.export import Exporter
from retention.stores.s3.fast_timestamps import set_timestamp_parser
from retention.stores.s3.listing import PAGE_SIZE, Entry, Lister, Prefetch, encode_cursor, read_cursor
from retention.stores.s3.parts import S3Parts
from retention.stores.s3.selection import DUE, Selection
from retention.stores.s3.tally import Attribution, histogram_entries, tally_entries
from retention.stores.s3.verification import Verifier

BATCH_SIZE = 8 * DELETE_CHUNK  # at most per PendingBatch: eight DeleteObjects calls, sent concurrently
TALLY_PAGES_AHEAD = 4  # listing pages fetched while earlier ones are counted
WORKERS = 8  # concurrent DeleteObjects / HEAD / GET calls (botocore's pool holds 10 connections)


class S3Store:
    """The Store protocol over one S3 location (``systems.yaml`` kind: s3).

    ``client`` is a ready boto3 S3 client; the caller builds it from the location's Airflow Connection
    (``S3Hook(aws_conn_id=spec.conn_id).get_conn()``). This class never creates credentials.
    """

    def __init__(self, location_id: str, spec: S3Location, client: S3Client, *, batch_size: int = BATCH_SIZE,
                 chunk_size: int = DELETE_CHUNK, page_size: int = PAGE_SIZE, workers: int = WORKERS) -> None:
        if not 1 <= chunk_size <= DELETE_CHUNK or not 1 <= page_size <= PAGE_SIZE:
            raise ValueError(f"S3 location {location_id}: chunk_size and page_size must be 1..1000")
        if batch_size < 1 or workers < 1:
            raise ValueError(f"S3 location {location_id}: batch_size and workers must be positive")
        self.location_id = location_id
        self.spec = spec
        set_timestamp_parser(client)
        self._batch_size = batch_size
        self._chunk_size = chunk_size
        self._page_size = page_size
        where = f"S3 location {location_id}"
        clock = KeyClock(spec.timestamp, where) if isinstance(spec.timestamp, KeySegmentTime) else None
        self._calls = S3Calls(client, location_id, spec.bucket)
        self._lister = Lister(self._calls, spec, page_size)
        self._selection = Selection(location_id, spec, clock)
        self._deleter = Deleter(self._calls, location_id, spec, chunk_size=chunk_size, workers=workers,
                                before_sending=self._check_versioning)
        parts = S3Parts(self._calls, spec, self._lister, self._selection, workers)
        self._verifier = Verifier(parts)
        self._exporter = Exporter(parts)
        self._attribution = Attribution.of(spec)
        self._versioning_checked = False

    # -- Store protocol ----------------------------------------------------------------------------

    def count(self, selector: Selector, after: str | None = None, upper: str | None = None) -> int:
        """Records matching the selector with keys in (after, upper]; versions + markers if versioned."""
        prefix = self._selection.prefix(selector)
        lower = read_cursor(after, prefix, self.location_id)
        high = read_cursor(upper, prefix, self.location_id)
        self._check_versioning()
        total = 0
        for key, entries, verdict in self._selection.groups(
                selector, self._lister.pages(prefix, lower, selector.account_id)):
            if high is not None and key > high.key:
                break
            if verdict == DUE:
                total += len(entries)
        return total

    def tally(self, accounts: Collection[str], due: Collection[Due] = ()) -> dict[str, Tally]:
        """Per account: its records here and those its ``Due`` matches, from ONE listing of the location's
        root, each key counted as ``count`` counts it (``s3.tally``); keys of other accounts are skipped."""
        self._check_versioning()
        root = self._attribution.root
        with Prefetch(self._lister.pages(root, None, None), ahead=TALLY_PAGES_AHEAD) as pages:
            return tally_entries(self.location_id, self.spec, self._selection, pages, accounts, due)

    def histogram(self, series: Collection[DueSeries]) -> Histogram:
        """Per account, at which cutoff of its series its records fall due, from ONE listing of the location's
        root (``s3.tally.histogram_entries``)."""
        self._check_versioning()
        with Prefetch(self._lister.pages(self._attribution.root, None, None), ahead=TALLY_PAGES_AHEAD) as pages:
            return histogram_entries(self.location_id, self.spec, self._selection, pages, series)

    def batches(self, selector: Selector, after: str | None = None) -> Iterator[PendingBatch]:
        """Batches of up to ``batch_size`` records in key order after the cursor; nothing is deleted.

        Listing runs in a background thread up to one batch ahead, so the next batch is being listed
        while the engine deletes the current one. A batch holds what has been listed so far: once it
        fills one DeleteObjects call and no further page is waiting, it goes. When listing is the slow
        side, deletion follows it page by page; when deletion is, pages queue up and batches grow to
        ``batch_size``, deleted by concurrent calls.
        """
        prefix = self._selection.prefix(selector)
        start = read_cursor(after, prefix, self.location_id)
        self._check_versioning()
        lower: str | None = after
        items: list[tuple[str, str | None]] = []
        last: Entry | None = None
        pages = Prefetch(self._lister.pages(prefix, start, selector.account_id),
                         ahead=max(1, self._batch_size // self._page_size))
        with pages:
            for group in self._selection.groups_and_page_ends(selector, pages):  # None: a page ended
                entries = group.entries if group is not None else []
                full = len(items) + len(entries) > self._batch_size
                listing_behind = group is None and len(items) >= self._chunk_size and not pages.waiting()
                if items and (full or listing_behind):
                    assert last is not None  # set with the first item
                    upper = encode_cursor(last)
                    yield PendingBatch(lower, upper, len(items), tuple(items))
                    lower, items = upper, []
                if group is not None and group.verdict == DUE:
                    items.extend((e.key, e.version_id) for e in entries)
                    last = entries[-1]
            if items:
                assert last is not None
                yield PendingBatch(lower, encode_cursor(last), len(items), tuple(items))

    def delete(self, batch: PendingBatch) -> Outcome:
        """DeleteObjects (Quiet) in chunks sent concurrently; every version and marker by version id."""
        return self._deleter.delete(batch)

    def anonymize(self, batch: PendingBatch) -> Outcome:
        raise ValueError(f"S3 location {self.location_id}: anonymize is not supported for objects; use delete")

    def isolate(self, batch: PendingBatch) -> Outcome:
        raise ValueError(f"S3 location {self.location_id}: isolation is for SQL tables (systems.yaml isolate_to)")

    def verify(self, selector: Selector) -> Residue:
        """Re-list until two consecutive listings agree; remaining = matching + undated records."""
        prefix = self._selection.prefix(selector)
        self._check_versioning()
        return self._verifier.verify(selector, prefix)

    def export(self, selector: Selector, sink: Path | str) -> int:
        """Download every matching current object to ``sink / key``; returns how many were written.

        On versioned buckets the current version is exported; a key whose newest entry is a delete
        marker has no current object and is skipped. Keys ending in "/" become folders.
        """
        prefix = self._selection.prefix(selector)
        self._check_versioning()
        return self._exporter.export(selector, prefix, sink)

    # -- data subjects (SubjectFinding) ------------------------------------------------------------

    def check_subject_lookups(self) -> None:
        """Nothing to check: a subject's objects are found by listing one account's prefix, never the bucket."""

    def linked(self, account_id: str, subject: Subject, limit: int) -> Subject | None:
        """The subject segments of the account's keys ``subject`` selects, at most ``limit`` + 1 values read
        (one listing of the account's prefix); segments that do not normalize are skipped."""
        if limit < 0:
            raise ValueError("limit must be zero or more")
        selector = Selector(account_id, subject=subject)
        prefix = self._selection.prefix(selector)
        self._check_versioning()
        found: dict[str, set[str]] = {}
        read = 0
        for group in self._selection.groups(selector, self._lister.pages(prefix, None, account_id)):
            for kind, value in self._selection.subject_values(group.key).items():
                try:
                    normalized = normalize(kind, value)
                except ValueError:
                    continue  # a segment that is not an identifier of its kind: nothing to follow
                if normalized not in found.setdefault(kind, set()):
                    found[kind].add(normalized)
                    read += 1
                if read > limit:
                    return Subject.of(found)
        return Subject.of(found) if found else None

    def _check_versioning(self) -> None:
        """Refuse a location that says unversioned over a bucket that keeps versions."""
        if self._versioning_checked:
            return
        status = self._calls.request("get_bucket_versioning", None, Bucket=self.spec.bucket).get("Status")
        if status in ("Enabled", "Suspended") and not self.spec.versioned:
            raise ValueError(
                f"S3 location {self.location_id}: bucket {self.spec.bucket} has versioning {status}, but the "
                "location says versioned: false, and a delete without version ids only hides objects behind "
                "delete markers; set versioned: true for this location in systems.yaml")
        self._versioning_checked = True
