"""One small interface over every place data lives. No rule logic here: a Selector says what.

The engine drives a store batch by batch so it can write an intent event before each destructive call
and an outcome event after it:

    for batch in store.batches(selector, after=checkpoint):    # bounds of the next batch, nothing deleted yet
        ledger: intent(batch.after, batch.upper, batch.count)
        outcome = store.delete(batch)                           # or store.anonymize(batch)
        ledger: outcome(outcome.affected); checkpoint = batch.upper

A batch covers the half-open key range (after, upper]. After a crash between intent and outcome the
engine calls ``count(selector, after, upper)`` to learn how much of the batch is already gone, so a
deletion is counted exactly once.

Stores that can anonymize (SQL) take ``pending_anonymize=True`` on count, batches and verify: anonymized
rows stay in place, so for an anonymize task only rows not yet anonymized match. The engine passes it only
for anonymize tasks, which the inventory allows only where the location's kind anonymizes.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from retention.ids import check_account_id
from retention.rules.subjects import Subject


@dataclass(frozen=True)
class Selector:
    """What to act on in one location: one account's records, optionally only the old ones, or only one data
    subject's.

    With ``subject``, a record is selected when one of the location's subject identifiers (the inventory's
    ``subjects:``) holds one of the subject's values of that kind, within the account. A location that keeps
    none of the subject's kinds selects nothing: a subject selector never falls back to the whole account.
    """

    account_id: str
    anchor: str | None = None  # record timestamp the cutoff applies to ("created_at", ...); None: all records
    cutoff: datetime | None = None  # records whose anchor time is at or before this; None with anchor None
    subject: Subject | None = None  # only this person's records (a data subject request); never with an anchor

    def __post_init__(self) -> None:
        # Refused here, not in each store: Selector(None) matched ``account_id IS NULL`` (orphan rows) and
        # "" matched rows with an empty account column; ".." would name a parent S3 prefix.
        check_account_id(self.account_id, "Selector.account_id")
        if (self.anchor is None) != (self.cutoff is None):
            raise ValueError("a Selector takes an anchor and a cutoff together, or neither (all of the account's data)")
        if self.cutoff is not None and self.cutoff.tzinfo is None:
            raise ValueError("cutoff must be timezone-aware")
        if self.subject is not None and self.anchor is not None:
            raise ValueError("a subject selector takes all of the person's records: no anchor or cutoff")


@dataclass(frozen=True)
class Retained:
    """Data a store could not remove and must not pretend it did: listed as an exception."""

    reason: str  # "object_lock_retention" | "object_lock_legal_hold" | ...
    count: int
    retain_until: datetime | None = None


class BatchLocked(RuntimeError):
    """A batch still met the application's locks after every retry; its transactions all rolled back."""

    def __init__(self, message: str, retries: int) -> None:
        super().__init__(message)
        self.retries = retries


@dataclass(frozen=True)
class PendingBatch:
    """The next batch: its key range and how many records it holds. Nothing is deleted yet."""

    after: str | None  # exclusive lower bound (None: from the start)
    upper: str  # inclusive upper bound, the checkpoint once done
    count: int
    items: Any = field(default=None, repr=False, compare=False)  # store-private (e.g. S3 keys+versions)
    # Called by a store before it tries the batch again (after a rolled-back attempt): the engine's legal-hold
    # check, so a hold placed while a batch waits on the application's locks stops it before its next try.
    recheck: Callable[[], None] | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class Due:
    """What a plan asks of one account at a location: the records its selector matches (for an anonymize task,
    only those still to anonymize)."""

    selector: Selector
    pending_anonymize: bool = False


@dataclass(frozen=True)
class Tally:
    """One account's records at a location, as a plan counts them."""

    total: int  # all of the account's records there
    due: int  # of those, the ones its ``Due`` matches (0 when none was asked)


@dataclass(frozen=True, eq=False)
class Cutoffs:
    """A series of cutoffs, earliest first (equal neighbours allowed): checked once, and shared by every account
    whose step moves its cutoff the same way (compared and hashed by identity, so a store groups the accounts
    sharing one series without comparing its instants)."""

    instants: tuple[datetime, ...]

    def __post_init__(self) -> None:
        if not self.instants:
            raise ValueError("a series of cutoffs needs at least one cutoff")
        if any(instant.tzinfo is None for instant in self.instants):
            raise ValueError("cutoffs must be timezone-aware")
        if any(later < earlier for earlier, later in zip(self.instants, self.instants[1:], strict=False)):
            raise ValueError("a series of cutoffs must not move earlier")


@dataclass(frozen=True)
class DueSeries:
    """What a forecast asks of one account at a location: its records that a step with this anchor matches at
    each cutoff of a series, or, without an anchor, all of its records (an account-wide step)."""

    account_id: str
    anchor: str | None  # record timestamp the cutoffs apply to; None: all of the account's records
    cutoffs: Cutoffs | None  # with an anchor, and only then
    pending_anonymize: bool = False  # as ``Due.pending_anonymize``

    def __post_init__(self) -> None:
        check_account_id(self.account_id, "DueSeries.account_id")
        if (self.anchor is None) != (self.cutoffs is None):
            raise ValueError("a DueSeries takes an anchor and cutoffs together, or neither (all of the account's data)")


def due_by_account(where: str, asked: Collection[str], due: Collection[Due], records: str, *,
                   anonymizes: bool = True) -> dict[str, Due]:
    """A tally's ``Due`` keyed by account, refusing (``where``: the location; ``records``: what it holds, for the
    message) a data subject's selector, an account not asked for, two different Dues for one account, and, where
    the kind cannot anonymize in place (``anonymizes`` False), a Due pending anonymization."""
    by_account: dict[str, Due] = {}
    for item in due:
        account = item.selector.account_id
        if item.selector.subject is not None:
            raise ValueError(f"{where}: a tally counts whole accounts; count a data subject's {records} with "
                             "count(selector)")
        if account not in asked:
            raise ValueError(f"{where}: a Due names account {account!r}, which was not asked for")
        if item.pending_anonymize and not anonymizes:
            raise ValueError(f"{where}: {records} cannot be anonymized in place; use delete")
        if by_account.setdefault(account, item) != item:
            raise ValueError(f"{where}: two different Dues for account {account!r}")
    return by_account


def series_by_account(where: str, series: Collection[DueSeries]) -> dict[str, DueSeries]:
    """The series keyed by account; two different series for one account are refused (``where``: the location)."""
    by_account: dict[str, DueSeries] = {}
    for item in series:
        if by_account.setdefault(item.account_id, item) != item:
            raise ValueError(f"{where}: two different series for account {item.account_id!r}")
    return by_account


def first_due(cutoffs: Cutoffs, anchor_time: datetime) -> int | None:
    """The index of the first cutoff at or after ``anchor_time`` (a record is due once its anchor time is at or
    before the cutoff), or None when it is due at none of them."""
    index = bisect_left(cutoffs.instants, anchor_time)
    return index if index < len(cutoffs.instants) else None


# Per account: {index of the first cutoff of its series at which records are due: how many}; an account-wide
# series answers at index 0. Records due at no cutoff of the series, and accounts with none due, are left out.
Histogram = dict[str, dict[int, int]]


@dataclass(frozen=True)
class Outcome:
    affected: int  # records (rows, objects, versions, delete markers) removed or anonymized
    retained: tuple[Retained, ...] = ()
    lock_retries: int = 0  # times the batch was rolled back on a lock timeout and tried again (SQL)


@dataclass(frozen=True)
class Residue:
    """What a verification found still matching the selector."""

    remaining: int  # records still there, retained ones included
    retained: tuple[Retained, ...] = ()

    @property
    def clean(self) -> bool:
        """Nothing left but what is legitimately retained (and reported as such)."""
        return self.remaining == sum(r.count for r in self.retained)


class Store(Protocol):
    location_id: str

    def tally(self, accounts: Collection[str], due: Collection[Due] = ()) -> dict[str, Tally]:
        """Per account: its records here and how many its ``Due`` matches, for every account at once, in a
        number of statements (or listing passes) that does not grow with the number of accounts. Accounts
        with no records here may be left out. A ``Due`` names one of ``accounts``."""

    def histogram(self, series: Collection[DueSeries]) -> Histogram:
        """Per account, when its records fall due along its series: a record counts at the first cutoff at or
        after its anchor time, judged exactly as ``tally`` and ``count`` judge it against one cutoff, so the
        records due at the series' j-th cutoff are the answer's counts at indexes 0..j. For every account at
        once, in a number of statements (or listing passes) that grows with neither the accounts nor the
        cutoffs. At most one series per account."""

    def count(self, selector: Selector, after: str | None = None, upper: str | None = None, *,
              pending_anonymize: bool = False) -> int:
        """Records matching the selector, within (after, upper] when bounds are given."""

    def batches(self, selector: Selector, after: str | None = None, *,
                pending_anonymize: bool = False) -> Iterator[PendingBatch]:
        """Successive batches after the checkpoint, each sized to keep one destructive call short."""

    def delete(self, batch: PendingBatch) -> Outcome:
        """Remove every record of the batch (all versions and delete markers on versioned buckets)."""

    def anonymize(self, batch: PendingBatch) -> Outcome:
        """Clear the configured columns of every record of the batch (SQL only)."""

    def isolate(self, batch: PendingBatch) -> Outcome:
        """Move the batch's records where normal processing cannot read them (SQL only)."""

    def verify(self, selector: Selector, *, pending_anonymize: bool = False) -> Residue:
        """Re-query the location: what still matches, and what of it is retained and why."""

    def export(self, selector: Selector, sink: Any) -> int:
        """Write every matching record to ``sink`` (for the return flow); returns the count."""


@runtime_checkable
class Isolating(Protocol):
    """A store that keeps data under law by moving it (kinds whose location model lists retain_isolated: SQL)."""

    def isolate(self, batch: PendingBatch) -> Outcome:
        """Move the batch's records where normal processing cannot read them."""

    def latest(self, selector: Selector, anchor: str) -> datetime | None:
        """The latest ``anchor`` time among matching records: when the last of them falls due."""


@dataclass(frozen=True)
class Cohort:
    """Accounts acted on together at one location: the same anchor, each account with its own cutoff (all
    ``None`` with anchor ``None``: all of each account's records)."""

    anchor: str | None
    cutoffs: Mapping[str, datetime | None]  # account id -> its cutoff

    def __post_init__(self) -> None:
        for account_id, cutoff in self.cutoffs.items():
            Selector(account_id, self.anchor, cutoff)  # the same checks as one account's selector


@dataclass(frozen=True)
class CohortBatch:
    """The next key range of a cohort, (after, upper], and each account's matching records in it."""

    cohort: Cohort
    after: str | None
    upper: str
    counts: Mapping[str, int]  # account id -> records; accounts with none are left out
    planned: int = 0  # the batch size the range was looked up with (for sizing)
    recheck: Callable[[], None] | None = field(default=None, repr=False, compare=False)  # as PendingBatch.recheck


@dataclass(frozen=True)
class CohortOutcome:
    deleted: Mapping[str, int]  # account id -> records deleted
    lock_retries: int = 0


@runtime_checkable
class CohortDeleting(Protocol):
    """A store that deletes for many accounts at once, in key ranges joined to the accounts' cutoffs (SQL):
    a constant number of statements per batch whatever the number of accounts."""

    def cohort_range(self, cohort: Cohort, after: str | None) -> CohortBatch | None:
        """The next range after ``after`` holding about one batch of the cohort's matching records, or None."""

    def cohort_count(self, cohort: Cohort, after: str | None, upper: str) -> dict[str, int]:
        """Per account, its matching records still in (after, upper] (crash recovery)."""

    def cohort_delete(self, batch: CohortBatch) -> CohortOutcome:
        """Delete the batch's records (only those of its cohort's accounts, at or before each one's cutoff),
        children first, in one bounded transaction; per account, the rows deleted."""


class SubjectLookupError(ValueError):
    """A subject column has no usable index: a subject request would scan the whole table. The message names the
    location, the column and the index."""


@runtime_checkable
class SubjectFinding(Protocol):
    """A store that finds a data subject's records by the identifiers the inventory's ``subjects:`` names."""

    def check_subject_lookups(self) -> None:
        """Raise ``SubjectLookupError`` unless every subject lookup goes through an index (SQL: each
        ``subjects[kind].index`` exists on the table, is valid and leads with ``subjects[kind].column``)."""

    def linked(self, account_id: str, subject: Subject, limit: int) -> Subject | None:
        """Identity expansion: the values of every subject kind this location keeps, on the records ``subject``
        selects within the account; at most ``limit`` + 1 values are read (more than ``limit`` returned: the
        caller knows it was bounded). Values that do not normalize are skipped; None when nothing matched."""
