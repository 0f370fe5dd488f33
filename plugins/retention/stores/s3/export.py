"""Exporting one account's objects (the return flow): download every matching current object to a folder."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path, PurePosixPath

from retention.stores.base import Selector
from retention.stores.s3.calls import S3StoreError
from retention.stores.s3.listing import Entry
from retention.stores.s3.parts import S3Parts
from retention.stores.s3.selection import DUE

log = logging.getLogger(__name__)


class Exporter:
    """Downloads one location's objects, ``workers`` at a time."""

    def __init__(self, parts: S3Parts) -> None:
        self._calls = parts.calls
        self._spec = parts.spec
        self._lister = parts.lister
        self._selection = parts.selection
        self._workers = parts.workers

    def export(self, selector: Selector, prefix: str, sink: Path | str) -> int:
        """Download every matching current object to ``sink / key``; returns how many were written.

        On versioned buckets the current version is exported; a key whose newest entry is a delete
        marker has no current object and is skipped. Keys ending in "/" become folders.
        """
        root = Path(sink)
        root.mkdir(parents=True, exist_ok=True)
        root = root.resolve()
        account = selector.account_id
        written = 0
        errors: list[str] = []
        inflight: set[Future[int]] = set()

        def collect(done: Iterable[Future[int]]) -> int:
            n = 0
            for future in done:
                try:
                    n += future.result()
                except (S3StoreError, OSError) as exc:
                    errors.append(str(exc) if isinstance(exc, S3StoreError) else type(exc).__name__)
            return n

        with ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="s3-export") as pool:
            for key, entries, verdict in self._selection.groups(selector, self._lister.pages(prefix, None, account)):
                if verdict != DUE:
                    continue
                current = current_of(entries)
                if current is None:
                    continue
                inflight.add(pool.submit(self._download, current, self._export_path(root, key, account), account))
                if len(inflight) >= 4 * self._workers:
                    done, inflight = wait(inflight, return_when=FIRST_COMPLETED)
                    written += collect(done)
            written += collect(inflight)
        if errors:
            raise S3StoreError(f"{self._calls.where(account)}: {len(errors)} objects could not be exported "
                               f"({written} were): {errors[0]}")
        log.info("%s: exported %d objects", self._calls.where(account), written)
        return written

    def _export_path(self, root: Path, key: str, account: str) -> Path:
        relative = PurePosixPath(key)
        if relative.is_absolute() or ".." in relative.parts:
            raise ValueError(f"S3 location {self._calls.location_id}: an object key of account {account} would "
                             "leave the export folder ('..' or a leading '/'); export refused")
        return root.joinpath(*relative.parts)

    def _download(self, entry: Entry, target: Path, account: str) -> int:
        if entry.key.endswith("/"):
            target.mkdir(parents=True, exist_ok=True)
            return 1
        target.parent.mkdir(parents=True, exist_ok=True)
        params = {"Bucket": self._spec.bucket, "Key": entry.key}
        if entry.version_id is not None:
            params["VersionId"] = entry.version_id

        def fetch() -> None:
            body = self._calls.client.get_object(**params)["Body"]
            fd, temp = tempfile.mkstemp(dir=target.parent, prefix=".part-")
            try:
                with os.fdopen(fd, "wb") as out, body:
                    for chunk in body.iter_chunks(1 << 20):
                        out.write(chunk)
                os.replace(temp, target)
            except BaseException:
                Path(temp).unlink(missing_ok=True)
                raise

        self._calls.call("get_object", account, fetch)
        return 1


def current_of(entries: list[Entry]) -> Entry | None:
    """The key's current object: its latest entry unless that is a delete marker."""
    latest = next((e for e in entries if e.is_latest), entries[0])
    return None if latest.is_marker else latest
