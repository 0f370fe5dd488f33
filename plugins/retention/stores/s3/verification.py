"""Verifying one account's prefix: re-list until two consecutive listings agree, count what still
matches or cannot be dated, and look up which remaining versions Object Lock retains."""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from retention.stores.base import Residue, Selector
from retention.stores.s3.calls import S3StoreError
from retention.stores.s3.objectlock import Lock, lock_of, retained_tuple
from retention.stores.s3.parts import S3Parts
from retention.stores.s3.selection import UNDATED, YOUNG

log = logging.getLogger(__name__)

VERIFY_LISTINGS = 6  # verify lists until two consecutive listings agree, at most this often


@dataclass
class Snapshot:
    """One listing of what a selector still matches: due and undated records and a digest of them."""

    due: int = 0
    undated: int = 0
    digest: str = ""
    lockable: list[tuple[str, str | None]] = field(default_factory=list)  # versions Object Lock may hold

    @property
    def total(self) -> int:
        return self.due + self.undated

    def agrees(self, other: Snapshot) -> bool:
        return (self.due, self.undated, self.digest) == (other.due, other.undated, other.digest)


class Verifier:
    """What remains under one account's prefix, and what of it is retained and why."""

    def __init__(self, parts: S3Parts) -> None:
        self._calls = parts.calls
        self._spec = parts.spec
        self._lister = parts.lister
        self._selection = parts.selection
        self._workers = parts.workers
        self._lock_enabled: bool | None = None

    def verify(self, selector: Selector, prefix: str) -> Residue:
        """Re-list until two consecutive listings agree; remaining = matching + undated records."""
        account = selector.account_id
        lockable = self._spec.versioned and self._object_lock_enabled()
        previous: Snapshot | None = None
        for _ in range(VERIFY_LISTINGS):
            snapshot = self._snapshot(selector, prefix, collect_lockable=lockable)
            if previous is not None and snapshot.agrees(previous):
                break
            if previous is not None:
                log.warning("%s: verification listings disagree (%d then %d records); listing again",
                            self._calls.where(account), previous.total, snapshot.total)
            previous = snapshot
        else:
            raise S3StoreError(
                f"{self._calls.where(account)}: {VERIFY_LISTINGS} listings never agreed twice in a row (is "
                "something still writing or deleting under the prefix?); verify again once it has stopped")
        retained: Counter[Lock] = Counter()
        if snapshot.undated:
            retained[("undated_key", None)] += snapshot.undated
        retained.update(self._locks_of(snapshot.lockable, account))
        residue = Residue(remaining=snapshot.due + snapshot.undated, retained=retained_tuple(retained))
        log.info("%s: %d records remain, %d of them retained", self._calls.where(account), residue.remaining,
                 sum(r.count for r in residue.retained))
        return residue

    def _snapshot(self, selector: Selector, prefix: str, collect_lockable: bool) -> Snapshot:
        snap = Snapshot()
        digest = hashlib.sha256()
        pages = self._lister.pages(prefix, None, selector.account_id)
        for key, entries, verdict in self._selection.groups(selector, pages):
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

    def _locks_of(self, pairs: list[tuple[str, str | None]], account: str) -> Counter[Lock]:
        found: Counter[Lock] = Counter()
        if not pairs:
            return found
        with ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="s3-verify") as pool:
            for lock in pool.map(lambda pair: lock_of(self._calls.head(pair[0], pair[1], account)), pairs):
                if lock is not None:
                    found[lock] += 1
        return found

    def _object_lock_enabled(self) -> bool:
        if self._lock_enabled is None:
            response = self._calls.request(
                "get_object_lock_configuration", None, Bucket=self._spec.bucket,
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
