"""Object Lock: what a version's HEAD says about its retention, and how retained records are reported."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

from retention.stores.base import Retained
from retention.stores.s3.calls import Response

LOCK_MODES = frozenset({"COMPLIANCE", "GOVERNANCE"})

Lock = tuple[str, datetime | None]  # (reason, retain_until)


def lock_of(head: Response | None) -> Lock | None:
    """(reason, retain_until) when the HEAD of a version shows an active Object Lock, else None."""
    if head is None or head.get("DeleteMarker"):
        return None
    if head.get("ObjectLockLegalHoldStatus") == "ON":
        return ("object_lock_legal_hold", None)
    until = head.get("ObjectLockRetainUntilDate")
    if head.get("ObjectLockMode") in LOCK_MODES and isinstance(until, datetime):
        until = until.astimezone(UTC)
        if until > datetime.now(UTC):
            return ("object_lock_retention", until)
    return None


def retained_tuple(counts: Counter[Lock]) -> tuple[Retained, ...]:
    far = datetime.max.replace(tzinfo=UTC)
    return tuple(Retained(reason, n, until)
                 for (reason, until), n in sorted(counts.items(), key=lambda kv: (kv[0][0], kv[0][1] or far)))
