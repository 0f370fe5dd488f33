"""Listing one account's prefix: pages of objects or versions in key order, cursors into them, and a
background thread that lists ahead of the consumer."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any

from retention.rules.inventory import S3Location
from retention.stores.s3.calls import Response, S3Calls, S3StoreError

PAGE_SIZE = 1000  # S3's maximum for one listing page
MAX_RESCANS = 4  # a listing that lost its place may restart from the prefix this often


@dataclass(frozen=True, slots=True)
class Entry:
    """One listed object, version or delete marker."""

    key: str
    version_id: str | None
    last_modified: datetime
    is_marker: bool = False
    is_latest: bool = True


@dataclass(frozen=True, slots=True)
class Cursor:
    key: str
    version_id: str | None


def encode_cursor(entry: Entry) -> str:
    return json.dumps([entry.key, entry.version_id], separators=(",", ":"))


def read_cursor(text: str | None, prefix: str, location_id: str) -> Cursor | None:
    """The cursor ``text`` names, refused unless it is JSON [key, version_id] under ``prefix``."""
    if text is None:
        return None
    key: object = None
    version_id: object = None
    try:
        key, version_id = json.loads(text)
    except (ValueError, TypeError):
        pass
    if isinstance(key, str) and key.startswith(prefix) and (version_id is None or isinstance(version_id, str)):
        return Cursor(key, version_id)
    raise ValueError(f"S3 location {location_id}: the cursor was not issued by this location for "
                     "this account (expected JSON [key, version_id] under the account's prefix)")


class Lister:
    """Pages of one location's entries under a prefix, in key order (versions newest first)."""

    def __init__(self, calls: S3Calls, spec: S3Location, page_size: int = PAGE_SIZE) -> None:
        self._calls = calls
        self._spec = spec
        self._page_size = page_size

    def pages(self, prefix: str, after: Cursor | None, account: str | None) -> Iterator[list[Entry]]:
        """Pages of entries in key order (versions newest first), strictly after the cursor's key. ``account``:
        whose prefix this is, for messages (None: a listing of the location's root, every account's keys)."""
        if self._spec.versioned:
            return self._version_pages(prefix, after, account)
        return self._object_pages(prefix, after, account)

    def _object_pages(self, prefix: str, after: Cursor | None, account: str | None) -> Iterator[list[Entry]]:
        start_after = after.key if after else None
        while True:
            params: dict[str, Any] = {"Bucket": self._spec.bucket, "Prefix": prefix, "MaxKeys": self._page_size}
            if start_after is not None:
                params["StartAfter"] = start_after
            response = self._calls.request("list_objects_v2", account, **params)
            entries = [Entry(o["Key"], None, o["LastModified"]) for o in response.get("Contents", ())]
            self._check_listed(entries, prefix, account)
            entries = [e for e in entries if start_after is None or e.key > start_after]
            if entries:
                yield entries
                start_after = entries[-1].key
            if not response.get("IsTruncated"):
                return
            if not entries:
                raise S3StoreError(f"{self._calls.where(account)}: the listing reports more objects but "
                                   "returned none")

    def _version_pages(self, prefix: str, after: Cursor | None, account: str | None) -> Iterator[list[Entry]]:
        """ListObjectVersions pages with KeyMarker/VersionIdMarker = the last entry returned.

        A marker version that has been deleted in the meantime (our own last batch, on a resume) makes
        some servers (moto) answer with an empty last page; such a page is trusted only when the marker
        still exists, otherwise listing restarts from the prefix and skips what is behind the cursor.
        """
        last_key = after.key if after else None
        seen: set[str | None] | None = None  # versions of last_key already yielded; None: all of them
        markers = (after.key, after.version_id) if after and after.version_id else None
        rescans = 0 if markers or after is None else 1  # a cursor without a version: start from the prefix

        def beyond(entry: Entry) -> bool:
            if last_key is None or entry.key > last_key:
                return True
            return entry.key == last_key and seen is not None and entry.version_id not in seen

        while True:
            params: dict[str, Any] = {"Bucket": self._spec.bucket, "Prefix": prefix, "MaxKeys": self._page_size}
            if markers:
                params.update(KeyMarker=markers[0], VersionIdMarker=markers[1])
            response = self._calls.request("list_object_versions", account,
                                           tolerate=frozenset({"InvalidArgument"}) if markers else frozenset(),
                                           **params)
            truncated = bool(response.get("IsTruncated")) and "Error" not in response
            entries = version_entries(response)
            self._check_listed(entries, prefix, account)
            fresh = [e for e in entries if beyond(e)]
            lost = "Error" in response or (
                markers is not None and not fresh and not truncated
                and self._calls.head(*markers, account=account) is None)
            if lost:
                rescans += 1
                if rescans > MAX_RESCANS:
                    raise S3StoreError(
                        f"{self._calls.where(account)}: the version listing lost its place {MAX_RESCANS} times "
                        "(objects are changing under the prefix); run again once writes and deletes there "
                        "have stopped")
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

    def _check_listed(self, entries: list[Entry], prefix: str, account: str | None) -> None:
        if any(not e.key.startswith(prefix) for e in entries):
            whose = f"account {account}" if account is not None else "the location's root"
            raise S3StoreError(f"S3 location {self._calls.location_id}: bucket {self._spec.bucket} listed keys "
                               f"outside the prefix of {whose}; refusing to act on that listing")


def version_entries(response: Response) -> list[Entry]:
    entries = [Entry(v["Key"], v.get("VersionId"), v["LastModified"], False, bool(v.get("IsLatest")))
               for v in response.get("Versions", ())]
    entries += [Entry(m["Key"], m.get("VersionId"), m["LastModified"], True, bool(m.get("IsLatest")))
                for m in response.get("DeleteMarkers", ())]
    # The response splits versions and markers into two lists; put them back in listing order
    # (key, then newest first). sort() is stable, so equal times keep the server's order.
    entries.sort(key=lambda e: (e.key, -e.last_modified.timestamp()))
    return entries


class _End:
    """What the prefetch thread queues after the last page."""


_END = _End()


class Prefetch:
    """Runs a page iterator in a background thread, at most ``ahead`` pages ahead of its consumer."""

    def __init__(self, pages: Iterator[list[Entry]], ahead: int) -> None:
        self._pages = pages
        self._queue: queue.Queue[list[Entry] | _End | BaseException] = queue.Queue(maxsize=ahead)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="s3-list-prefetch", daemon=True)

    def __enter__(self) -> Prefetch:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._queue.get(timeout=0.05)  # unblock a producer waiting on a full queue
            except queue.Empty:
                pass

    def waiting(self) -> bool:
        """Whether a listed page is ready to be taken without blocking."""
        return not self._queue.empty()

    def __iter__(self) -> Iterator[list[Entry]]:
        while True:
            item = self._queue.get()
            if isinstance(item, _End):
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def _run(self) -> None:
        try:
            for page in self._pages:
                if not self._put(page):
                    return
            self._put(_END)
        except BaseException as exc:  # handed to the consumer, raised there
            self._put(exc)
        finally:
            close = getattr(self._pages, "close", None)
            if close is not None:
                close()

    def _put(self, item: list[Entry] | _End | BaseException) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False
