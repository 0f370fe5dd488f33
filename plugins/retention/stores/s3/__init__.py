"""Objects under one account's S3 prefix: list them in key order, delete every version, verify the rest.

Selection
    An object matches a Selector when its key is under ``spec.prefix(account_id)`` and, with a cutoff,
    its time is at or before the cutoff (inclusive). The time is ``LastModified`` or one "/"-separated
    key segment parsed with a strptime format (UTC unless the format carries an offset). A segment
    coarser than a second ("%Y-%m-%d") names a whole period, and the object matches only once all of
    that period is at or before the cutoff: a day-dated object is never taken for midnight. A key
    whose segment does not parse never matches (what cannot be dated is never deleted); ``verify``
    counts it as remaining and reports it as ``Retained("undated_key")``.

    With a data subject (``Selector.subject``), a key matches only when one of the location's ``subjects:``
    key segments is one of the subject's values of that kind; other keys are not the selector's at all
    (not counted, retained, young or undated). A location keeping none of the subject's kinds selects
    nothing. ``tally`` counts whole accounts and refuses a subject. ``linked`` reads the subject segments
    of a subject's keys (identity expansion) from one listing of the account's prefix, bounded by a limit.

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

One module per job: ``keydates`` (dating a key), ``calls`` (retries and error wording), ``listing``
(pages, cursors, the prefetch thread), ``selection`` (which listed records a selector takes),
``deletion``, ``objectlock``, ``verification``, ``export``, ``parts`` (what verification and export share),
``fast_timestamps`` (botocore's timestamp parser hook) and ``store`` (``S3Store``, which wires them into the
Store protocol).
"""

from retention.stores.keydates import KeyClock
from retention.stores.s3.calls import S3StoreError
from retention.stores.s3.store import S3Store

__all__ = ["KeyClock", "S3Store", "S3StoreError"]
