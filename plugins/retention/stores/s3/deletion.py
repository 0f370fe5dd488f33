"""Deleting a batch: DeleteObjects (Quiet) in chunks sent concurrently, every version and delete marker
by version id; keys refused under Object Lock are reported as retained, transient per-key failures are
sent again, anything else raises ``S3StoreError``."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from retention.rules.inventory import S3Location
from retention.stores.base import Outcome, PendingBatch
from retention.stores.s3.calls import (
    RETRY_WAIT_INITIAL,
    RETRY_WAIT_MAX,
    TRANSIENT_CODES,
    Response,
    S3Calls,
    S3StoreError,
)
from retention.stores.s3.objectlock import Lock, lock_of, retained_tuple

log = logging.getLogger(__name__)

DELETE_CHUNK = 1000  # S3's maximum for one DeleteObjects call
KEY_ATTEMPTS = 4  # DeleteObjects rounds for keys the server reported as transiently failed

Pair = tuple[str, str | None]  # (key, version_id)


@dataclass
class ChunkResult:
    requested: int
    retained: Counter[Lock] = field(default_factory=Counter)  # (reason, retain_until) -> records
    failed: Counter[str] = field(default_factory=Counter)  # error code -> records


class Deleter:
    """Deletes the batches of one location; ``before_sending`` runs once a batch is found well-formed and
    not empty, before its first DeleteObjects call (the store's versioning check)."""

    def __init__(self, calls: S3Calls, location_id: str, spec: S3Location, *, chunk_size: int, workers: int,
                 before_sending: Callable[[], None]) -> None:
        self._calls = calls
        self._before_sending = before_sending
        self._location_id = location_id
        self._spec = spec
        self._chunk_size = chunk_size
        self._workers = workers

    def delete(self, batch: PendingBatch) -> Outcome:
        """DeleteObjects (Quiet) in chunks sent concurrently; every version and marker by version id."""
        pairs, account = self._batch_pairs(batch)
        if not pairs:
            return Outcome(affected=0)
        self._before_sending()
        chunks = [pairs[i:i + self._chunk_size] for i in range(0, len(pairs), self._chunk_size)]
        results: list[ChunkResult] = []
        broken: list[str] = []
        with ThreadPoolExecutor(max_workers=min(self._workers, len(chunks)), thread_name_prefix="s3-delete") as pool:
            futures = [pool.submit(self._delete_chunk, chunk, account) for chunk in chunks]
            for future in futures:
                try:
                    results.append(future.result())
                except S3StoreError as exc:
                    broken.append(str(exc))
        retained: Counter[Lock] = Counter()
        failed: Counter[str] = Counter()
        for result in results:
            retained.update(result.retained)
            failed.update(result.failed)
        n_retained, n_failed = sum(retained.values()), sum(failed.values())
        affected = sum(r.requested for r in results) - n_retained - n_failed
        where = self._calls.where(account)
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
        return Outcome(affected=affected, retained=retained_tuple(retained))

    def _batch_pairs(self, batch: PendingBatch) -> tuple[list[Pair], str]:
        """The batch's (key, version id) pairs and their one account, refused unless the batch is one
        account's keys under the key template (with version ids on a versioned bucket)."""
        pairs: list[Pair] = list(batch.items or ())
        template = self._spec.key_template
        head, tail = template.split("{account_id}")
        accounts = set()
        for pair in pairs:
            key, version_id = pair
            if not (isinstance(key, str) and key.startswith(head) and tail in key[len(head):]):
                raise ValueError(f"S3 location {self._location_id}: the batch holds a key outside "
                                 f"{template!r}; refusing to delete it")
            accounts.add(key[len(head):].split(tail, 1)[0])
            if self._spec.versioned and not version_id:
                raise ValueError(f"S3 location {self._location_id}: a batch for a versioned bucket must name "
                                 "every version; a delete without a version id only adds a delete marker")
        if len(accounts) > 1:
            raise ValueError(f"S3 location {self._location_id}: the batch mixes {len(accounts)} accounts; "
                             "a batch covers one account's prefix")
        return pairs, next(iter(accounts), "-")

    def _delete_chunk(self, pairs: list[Pair], account: str) -> ChunkResult:
        result = ChunkResult(requested=len(pairs))
        pending = pairs
        transient: Counter[str] = Counter()
        for attempt in range(KEY_ATTEMPTS):
            objects = [{"Key": k, "VersionId": v} if v is not None else {"Key": k} for k, v in pending]
            response = self._calls.request("delete_objects", account, Bucket=self._spec.bucket,
                                           Delete={"Objects": objects, "Quiet": True})
            failures = self._failed_pairs(pending, response.get("Errors") or (), account)
            transient = Counter()
            retry = []
            for pair, (code, head) in failures.items():
                if code in TRANSIENT_CODES:
                    transient[code] += 1
                    retry.append(pair)
                    continue
                lock = lock_of(head) if code == "AccessDenied" else None
                if lock is not None:
                    result.retained[lock] += 1
                else:
                    result.failed[code] += 1
            pending = retry
            if not pending:
                break
            log.warning("%s: %d keys failed transiently, round %d of %d",
                        self._calls.where(account), len(pending), attempt + 1, KEY_ATTEMPTS)
            time.sleep(min(RETRY_WAIT_MAX, RETRY_WAIT_INITIAL * 2 ** attempt))
        result.failed.update(transient)
        return result

    def _failed_pairs(self, pending: list[Pair], errors: Iterable[dict[str, Any]],
                      account: str) -> dict[Pair, tuple[str, Response | None]]:
        """Which requested records an Errors list names, each with its code and (for AccessDenied) HEAD.

        S3 names the version of a failed key; moto does not, so for a versioned request without one
        every requested version of that key that still exists counts as failed.
        """
        by_key: dict[str, list[Pair]] = {}
        for pair in pending:
            by_key.setdefault(pair[0], []).append(pair)
        failed: dict[Pair, tuple[str, Response | None]] = {}
        checked: set[Pair] = set()
        for error in errors:
            key, version_id = error.get("Key"), error.get("VersionId")
            code = str(error.get("Code") or "Unknown")
            candidates: list[Pair] = []
            named = True
            if isinstance(key, str):
                if not self._spec.versioned:
                    candidates = [(key, None)]
                elif version_id is not None:
                    candidates = [(key, str(version_id))]
                else:
                    named, candidates = False, by_key.get(key, [])
            if not candidates or any(pair not in by_key.get(pair[0], ()) for pair in candidates):
                raise S3StoreError(f"{self._calls.where(account)}: DeleteObjects reported an error ({code}) "
                                   "for a record not sent")
            for pair in candidates:
                if pair in checked:
                    continue
                checked.add(pair)
                head = None
                if code == "AccessDenied" or not named:
                    head = self._calls.head(pair[0], pair[1], account)
                    if head is None:
                        continue  # not there any more: it did go
                failed[pair] = (code, head)
        return failed
