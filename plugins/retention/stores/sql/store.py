"""``SqlStore``: the Store protocol over one SQL location, wiring reflection, selection, batch sizing,
bounded transactions, the destructive statements and export (the package docstring states the rules)."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select

from retention.rules.inventory import DEFAULT_LOCK_TIMEOUT_MS, DEFAULT_STATEMENT_TIMEOUT_MS, SqlLocation
from retention.rules.subjects import Subject
from retention.stores.base import (
    Cohort,
    CohortBatch,
    CohortOutcome,
    Due,
    DueSeries,
    Histogram,
    PendingBatch,
    Selector,
    Tally,
)
from retention.stores.sql import cohorts, subjects
from retention.stores.sql.export import export_rows
from retention.stores.sql.histogram import histogram_rows
from retention.stores.sql.results import SqlOutcome, SqlResidue
from retention.stores.sql.schema import Child, LocationSchema
from retention.stores.sql.selection import RowSelection
from retention.stores.sql.sizing import BatchSizer
from retention.stores.sql.statements import anonymize_rows, delete_rows, isolate_rows, isolated_table
from retention.stores.sql.tally import tally_rows
from retention.stores.sql.transactions import BoundedTransactions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Plan:
    """What a PendingBatch carries for this store: its planned size and the selector it was built for."""

    size: int
    selector: Selector
    pending_anonymize: bool = False


class SqlStore:
    """One ``SqlLocation``: a table with an account column, timestamps, optional children and anonymize."""

    def __init__(self, location_id: str, spec: SqlLocation, engine: Engine, *,
                 target_seconds: float = 0.25, initial_batch_size: int | None = None,
                 min_batch_size: int = 100, max_batch_size: int = 1_000_000, max_lock_retries: int = 5,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        """``initial_batch_size`` defaults to 5,000 rows, or 500 when children are deleted too (each row
        may take many child rows with it, and the first batch is sized before anything is measured).
        ``max_lock_retries``: how often a batch that hit the lock timeout is tried again; ``sleep``
        waits out the back-off between tries."""
        self.location_id = location_id
        self.spec = spec
        self.engine = engine
        self._transactions = BoundedTransactions(
            engine, location_id, lock_timeout_ms=spec.lock_timeout_ms or DEFAULT_LOCK_TIMEOUT_MS,
            statement_timeout_ms=spec.statement_timeout_ms or DEFAULT_STATEMENT_TIMEOUT_MS,
            max_lock_retries=max_lock_retries, sleep=sleep)
        if initial_batch_size is None:
            initial_batch_size = 500 if spec.children else 5_000
        self.sizer = BatchSizer(target_seconds=target_seconds, initial=max(min_batch_size, initial_batch_size),
                                minimum=min_batch_size, maximum=max_batch_size)
        self._salt = secrets.token_hex(32)  # per instance, never stored nor logged
        self._schema = LocationSchema(location_id, spec, engine)
        self._rows = RowSelection(self._schema)
        self.table = self._schema.table
        self.children: list[Child] = self._schema.children

    # -- the Store interface ------------------------------------------------------------------

    def count(self, selector: Selector, after: str | None = None, upper: str | None = None, *,
              pending_anonymize: bool = False) -> int:
        """Rows matching the selector within (after, upper]; with ``pending_anonymize`` only the rows an
        ``anonymize`` would still change (what crash recovery counts in anonymize mode)."""
        where = self._rows.where(selector, after, upper, pending_anonymize=pending_anonymize)
        with self.engine.connect() as conn:
            total: int = conn.execute(select(func.count()).select_from(self.table).where(where)).scalar_one()
        return total

    def tally(self, accounts: Collection[str], due: Collection[Due] = ()) -> dict[str, Tally]:
        """Per account: its rows here and those its ``Due`` matches, in grouped statements (``sql.tally``)."""
        return tally_rows(self.engine, self._schema, self._rows, accounts, due)

    def histogram(self, series: Collection[DueSeries]) -> Histogram:
        """Per account, at which cutoff of its series its rows fall due, in one grouped statement per
        (anchor, pending_anonymize) pair (``sql.histogram``)."""
        return histogram_rows(self.engine, self._schema, self._rows, series)

    def batches(self, selector: Selector, after: str | None = None, *,
                pending_anonymize: bool = False) -> Iterator[PendingBatch]:
        """The next key ranges after the checkpoint, each holding about ``sizer.size`` matching rows.

        Each step is one aggregate query (max key and count of the next N matching keys after the
        cursor); nothing is deleted. While the caller acts on one batch, the next range is already
        being looked up on a second connection (it lies wholly above the batch being acted on, so the
        two never touch the same rows); if that batch turned out slow enough to shrink the size, the
        range is looked up again at the new size. With ``pending_anonymize`` only rows still to
        anonymize count (plan anonymize runs this way: rows done by an earlier run are not listed).
        """
        self._rows.where(selector, after, None, pending_anonymize=pending_anonymize)  # refuse a bad selector now
        lookahead = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"retention-{self.location_id}")
        try:
            cursor = after
            upcoming = lookahead.submit(self._next_range, selector, cursor, self.sizer.size, pending_anonymize)
            while True:
                size, upper, count = upcoming.result()
                if self.sizer.size < size * 0.8:
                    size, upper, count = self._next_range(selector, cursor, self.sizer.size, pending_anonymize)
                if not count:
                    return
                batch = PendingBatch(after=cursor, upper=str(upper), count=count,
                                     items=_Plan(size, selector, pending_anonymize))
                upcoming = lookahead.submit(self._next_range, selector, batch.upper, self.sizer.size,
                                            pending_anonymize)
                yield batch
                cursor = batch.upper
        finally:
            lookahead.shutdown(wait=True, cancel_futures=True)

    def _next_range(self, selector: Selector, after: str | None, size: int,
                    pending_anonymize: bool) -> tuple[int, Any, int]:
        """(size, last key, count) of the next ``size`` matching keys after ``after``.

        One query: the next ``size`` matching keys, numbered in key order; the last one is the range's
        upper key and its number the range's row count, for a full range and a short last one alike.
        No keys travel to the client, and no aggregate is needed (PostgreSQL has no max(uuid)).
        """
        key = self._schema.key
        matching = (select(key.label("key"))
                    .where(self._rows.where(selector, after, None, pending_anonymize=pending_anonymize))
                    .order_by(key).limit(size)).subquery()
        numbered = select(matching.c.key, func.row_number().over(order_by=matching.c.key).label("n")).subquery()
        with self.engine.connect() as conn:
            last = conn.execute(select(numbered.c.key, numbered.c.n).order_by(numbered.c.n.desc()).limit(1)).first()
        return (size, None, 0) if last is None else (size, last.key, last.n)

    def delete(self, batch: PendingBatch) -> SqlOutcome:
        """Children first, then the location's rows of the batch, in one transaction."""
        plan = self._plan_of(batch)
        if plan.pending_anonymize:
            raise ValueError(f"location {self.location_id}: this batch was planned for anonymize (it counts "
                             "only rows not yet anonymized); plan deletions with batches(selector)")
        parents = self._rows.where(plan.selector, batch.after, batch.upper)
        work = delete_rows(self._schema, self._rows, parents, batch.after, batch.upper)
        (affected, children), seconds, retries = self._transactions.run(batch, work)
        self._observe(plan, affected, seconds, "deleted")
        return SqlOutcome(affected=affected, children=children, seconds=seconds, lock_retries=retries)

    def anonymize(self, batch: PendingBatch) -> SqlOutcome:
        """Clear the configured columns of the batch's rows not yet anonymized, in one UPDATE.

        ``set_null`` columns become NULL; ``hash`` columns become the hex sha256 of value || a salt drawn
        per store instance and never stored (NULL stays NULL; a value already hashed is kept). Rows
        with nothing left to clear are not touched and not counted, so a rerun affects 0 rows.
        """
        if not (self._schema.null_columns or self._schema.hash_columns):
            raise ValueError(f"location {self.location_id}: the spec names no anonymize columns")
        plan = self._plan_of(batch)
        where = self._rows.where(plan.selector, batch.after, batch.upper, pending_anonymize=True)
        affected, seconds, retries = self._transactions.run(batch, anonymize_rows(self._schema, where, self._salt))
        self._observe(plan, affected, seconds, "anonymized")
        return SqlOutcome(affected=affected, seconds=seconds, lock_retries=retries)

    # -- data subjects (SubjectFinding) ------------------------------------------------------------

    def check_subject_lookups(self) -> None:
        """``SubjectLookupError`` unless each subject column's index exists, is valid and leads with it."""
        subjects.check_lookups(self.engine, self._schema, self.spec)

    def linked(self, account_id: str, subject: Subject, limit: int) -> Subject | None:
        """The identifiers on the account's rows ``subject`` selects, at most ``limit`` + 1 values read."""
        return subjects.linked(self.engine, self._schema, self._rows, account_id, subject, limit)

    # -- many accounts at once (CohortDeleting) -----------------------------------------------

    def cohort_range(self, cohort: Cohort, after: str | None) -> CohortBatch | None:
        """The next span of about ``sizer.size`` keys after ``after`` that holds some of the cohort's rows, with
        each account's count in it; None past the last key. Spans without any of the cohort's rows are skipped,
        each next one four times longer (a gap costs a few index walks, not one per span); a long span found that
        way is halved until it holds no more rows than a batch should, so no transaction grows with a gap."""
        size = span = self.sizer.size
        rows = self._cohort_rows(cohort)
        with self.engine.connect() as conn:
            while True:
                found = cohorts.next_range(conn, rows, self._schema, self._rows, after, span)
                if found is None:
                    return None
                upper, counts = found
                if counts and (span <= size or sum(counts.values()) <= size):
                    return CohortBatch(cohort=cohort, after=after, upper=upper, counts=counts, planned=span)
                if counts:
                    span //= 2  # too many of the cohort's rows for one batch: look at the first half of the span
                    continue
                after, span = upper, min(span * 4, self.sizer.maximum)

    def cohort_count(self, cohort: Cohort, after: str | None, upper: str) -> dict[str, int]:
        """Per account, the cohort's matching rows still in (after, upper]."""
        with self.engine.connect() as conn:
            return cohorts.count_in_range(conn, self._cohort_rows(cohort), self._schema, after, upper)

    def cohort_delete(self, batch: CohortBatch) -> CohortOutcome:
        """Children first, then the cohort's rows in (after, upper] (each account's only, at or before its own
        cutoff), in one bounded transaction; per account the rows ``RETURNING`` named."""
        work = cohorts.delete_rows(self._schema, self._rows, self._cohort_rows(batch.cohort), batch.after,
                                   batch.upper)
        (deleted, children), seconds, retries = self._transactions.run(batch, work)
        rows = sum(deleted.values())
        # A batch is a span of keys, not of matches: its size follows the time the span took, however many of
        # its rows were the cohort's.
        self.sizer.observe(batch.planned, batch.planned, seconds)
        log.info("location %s: deleted %d rows of %d accounts (+%d child rows) in %.3f s (next batch %d)",
                 self.location_id, rows, len(deleted), sum(children.values()), seconds, self.sizer.size)
        return CohortOutcome(deleted=deleted, lock_retries=retries)

    def _cohort_rows(self, cohort: Cohort) -> cohorts.CohortRows:
        return cohorts.CohortRows(self._schema, self._rows, cohort)

    def latest(self, selector: Selector, anchor: str) -> datetime | None:
        """The latest ``anchor`` time among matching rows: when the last of them falls due."""
        column = self._schema.timestamps[anchor]
        with self.engine.connect() as conn:
            value: datetime | None = conn.execute(
                select(func.max(column)).where(self._rows.where(selector, None, None))).scalar_one()
        return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)

    def isolate(self, batch: PendingBatch) -> SqlOutcome:
        """Move the batch's rows to the ``isolate_to`` table in one statement: the rows deleted are exactly
        the rows inserted (``WITH moved AS (DELETE … RETURNING …) INSERT … SELECT FROM moved``).

        Rows kept under law leave every table normal processing reads (DPA 7(b)); the isolated table
        holds the same columns, and the sweep deletes the rows there when their period ends.
        """
        vault = isolated_table(self._schema, self.spec.isolate_to)
        plan = self._plan_of(batch)
        parents = self._rows.where(plan.selector, batch.after, batch.upper)
        affected, seconds, retries = self._transactions.run(batch, isolate_rows(self._schema, vault, parents))
        self._observe(plan, affected, seconds, "isolated")
        return SqlOutcome(affected=affected, seconds=seconds, lock_retries=retries)

    def verify(self, selector: Selector, *, pending_anonymize: bool = False) -> SqlResidue:
        """Rows still matching (with ``pending_anonymize``: still identifiable) and child rows pointing at them."""
        where = self._rows.where(selector, None, None, pending_anonymize=pending_anonymize)
        with self.engine.connect() as conn:
            remaining: int = conn.execute(select(func.count()).select_from(self.table).where(where)).scalar_one()
            children: dict[str, int] = {}
            for child in self.children:
                n: int = conn.execute(select(func.count()).select_from(child.table)
                                      .where(child.fk.in_(select(self._schema.key).where(where)))).scalar_one()
                children[child.table.fullname] = children.get(child.table.fullname, 0) + n
        return SqlResidue(remaining=remaining, children=children)

    def export(self, selector: Selector, sink: Path | str, *, chunk_rows: int = 1_000) -> int:
        """Write matching rows as JSON Lines ``sink/<table>.jsonl``, each child table in its own file.

        Streams through a server-side cursor inside one REPEATABLE READ transaction, so the parent and
        child files are one consistent snapshot. Each file is written under a ``.partial`` name and
        renamed when complete. Returns the number of the location's rows written.
        """
        return export_rows(self.engine, self._schema, self._rows.where(selector, None, None), sink, chunk_rows)

    # -- batches and sizing -------------------------------------------------------------------

    def _plan_of(self, batch: PendingBatch) -> _Plan:
        plan = batch.items
        if not isinstance(plan, _Plan):
            raise ValueError(f"location {self.location_id}: a batch must come from this store's batches()")
        return plan

    def _observe(self, plan: _Plan, rows: int, seconds: float, verb: str) -> None:
        self.sizer.observe(plan.size, rows, seconds)
        log.info("location %s: %s %d rows in %.3f s (batch of %d planned; next %d)",
                 self.location_id, verb, rows, seconds, plan.size, self.sizer.size)
