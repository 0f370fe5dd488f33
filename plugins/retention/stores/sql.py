"""A SQL table (and the tables that reference it) as a ``Store``, through SQLAlchemy Core.

Safety first:

- The table, its children and every column the spec names are reflected when the store is built;
  anything missing is refused with a ``ValueError`` naming the location and the table/column. So is a
  key that is not unique, a timestamp that is not a time, a child column without a foreign key to our
  key, and a table that references ours with ``ON DELETE CASCADE / SET NULL / SET DEFAULT`` without
  being listed as a child (the database would change its rows silently and uncounted).
- Every statement is built with SQLAlchemy Core from the reflected ``Table`` objects; every value is a
  bound parameter. Logs carry the location id, counts, batch sizes and durations, never row contents.
- A record is selected only by its account column and, with an anchor, by ``timestamp <= cutoff``:
  a NULL timestamp cannot be dated and is never selected.

Batches are key ranges ``(after, upper]`` on the unique ``key_column``. ``batches`` finds the next
range with one query (no keys travel to the client), looked up while the caller is still acting on
the previous batch; ``delete`` and ``anonymize`` act on a range with one statement per table in one
short transaction.

Short locks, bounded waits: every destructive transaction starts with ``SET LOCAL lock_timeout`` and
``SET LOCAL statement_timeout`` (the location's ``lock_timeout_ms`` / ``statement_timeout_ms``, else 2 s
and 30 s). A batch that meets an application's row lock gives up after the lock timeout instead of
waiting behind it while holding its own row locks; its transaction rolls back whole, and after a
back-off it is tried again, at most ``max_lock_retries`` times (then ``BatchLocked``). The outcome says
how many retries it took (``lock_retries``). A statement past its timeout is not retried: the same
batch would be as slow. The batch size adapts to how long that transaction took (``BatchSizer``): large
enough that per-batch overhead is small, small enough that no transaction holds its row locks for
more than about a second.

Anonymize is idempotent by construction: a row is *pending* while a ``set_null`` column is not NULL or
a ``hash`` column holds something other than a 64-hex-digit sha256; the UPDATE touches pending rows
only, and ``count``/``batches``/``verify`` take ``pending_anonymize=True`` to see just those. A rerun
after a crash (a new store, a new salt) therefore finds the committed batches done and counts them 0.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import time
import uuid
from base64 import b64encode
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, time as dtime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine, and_, delete, func, or_, select, update
from sqlalchemy.exc import DBAPIError, NoSuchTableError
from sqlalchemy.sql.elements import ColumnElement
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from retention.rules.inventory import DEFAULT_LOCK_TIMEOUT_MS, DEFAULT_STATEMENT_TIMEOUT_MS, SqlLocation
from retention.stores.base import BatchLocked, Outcome, PendingBatch, Residue, Selector

log = logging.getLogger(__name__)

HASH_HEX_LENGTH = 64  # hex sha256
LOCK_NOT_AVAILABLE = "55P03"  # SQLSTATE of a lock_timeout (and of NOWAIT)
QUERY_CANCELED = "57014"  # SQLSTATE of a statement_timeout (and of a cancel request)
_HASHED_PATTERN = "^[0-9a-f]{64}$"  # what an anonymized hash column holds


# ---------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class SqlOutcome(Outcome):
    """``affected`` counts rows of the location's table; ``children`` the rows removed from each child
    table first (``{table: rows}``), which are not records of this location and so not in ``affected``."""

    children: Mapping[str, int] = field(default_factory=dict, hash=False)
    seconds: float = field(default=0.0, compare=False)  # duration of the transaction

    @property
    def child_rows(self) -> int:
        return sum(self.children.values())


@dataclass(frozen=True)
class SqlResidue(Residue):
    """``remaining`` rows of the location's table still matching; ``children`` rows still pointing at them."""

    children: Mapping[str, int] = field(default_factory=dict, hash=False)


# ---------------------------------------------------------------------------------------------
# Batch sizing


@dataclass
class BatchSizer:
    """Rows per batch, adapted to the measured duration of each destructive transaction.

    After each batch the size is scaled by ``target / duration`` (how far the batch was from the
    target), the factor clamped to [``shrink``, ``grow``] so one noisy measurement cannot swing it far,
    and the size clamped to [``minimum``, ``maximum``]. A batch that took a quarter of the target or
    less is followed by one at most four times larger, predicted to take at most the target: a fast
    database reaches ~0.25 s batches in a few steps. One that took longer than the target is followed
    by a proportionally smaller one (at most down to a quarter per step): a 1 s transaction is
    followed by ~0.25 s ones. Within [0.8, 1.25] of the target the size is left alone rather than
    chase noise, and a short tail batch (fewer than half the rows planned, and fast) teaches nothing.
    """

    target_seconds: float = 0.25
    initial: int = 5_000
    minimum: int = 100
    maximum: int = 1_000_000
    grow: float = 4.0
    shrink: float = 0.25
    size: int = 0
    history: list[tuple[int, int, float]] = field(default_factory=list)  # (planned size, rows, seconds)

    def __post_init__(self) -> None:
        if not (0 < self.minimum <= self.initial <= self.maximum):
            raise ValueError("batch sizes must satisfy 0 < minimum <= initial <= maximum")
        if self.target_seconds <= 0:
            raise ValueError("target_seconds must be positive")
        self.size = self.size or self.initial

    def observe(self, planned: int, rows: int, seconds: float) -> None:
        """Record one destructive transaction over a batch planned at ``planned`` rows."""
        self.history.append((planned, rows, seconds))
        if rows < planned // 2 and seconds < self.target_seconds:
            return  # a short tail batch (or a rerun with nothing left) says little about the rate
        factor = min(self.grow, max(self.shrink, self.target_seconds / max(seconds, 1e-6)))
        if 0.8 <= factor <= 1.25:
            return  # close enough: keep the size steady rather than chase noise
        base = max(1, min(rows, planned))
        self.size = int(min(self.maximum, max(self.minimum, base * factor)))


# ---------------------------------------------------------------------------------------------
# The store


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
        self.lock_timeout_ms = spec.lock_timeout_ms or DEFAULT_LOCK_TIMEOUT_MS
        self.statement_timeout_ms = spec.statement_timeout_ms or DEFAULT_STATEMENT_TIMEOUT_MS
        if max_lock_retries < 0:
            raise ValueError("max_lock_retries must be 0 or more")
        self.max_lock_retries = max_lock_retries
        self._sleep = sleep
        if initial_batch_size is None:
            initial_batch_size = 500 if spec.children else 5_000
        self.sizer = BatchSizer(target_seconds=target_seconds, initial=max(min_batch_size, initial_batch_size),
                                minimum=min_batch_size, maximum=max_batch_size)
        self._salt = secrets.token_hex(32)  # per instance, never stored nor logged

        self.table = self._reflect(spec.table)
        self._account = self._column(self.table, spec.account_column, "account_column")
        self._key = self._column(self.table, spec.key_column, "key_column")
        self._require_key_type(self._key)
        self._require_unique_key()
        self._timestamps = {anchor: self._column(self.table, name, f"timestamps.{anchor}")
                            for anchor, name in spec.timestamps.items()}
        for anchor, column in self._timestamps.items():
            if not isinstance(column.type, (sa.DateTime, sa.Date)):
                self._refuse(f"timestamps.{anchor}: column {self._name(column)} is {column.type}, "
                             "not a timestamp or date")

        self.children: list[_Child] = []
        for i, child in enumerate(spec.children):
            ctable = self._reflect(child.table, f"children[{i}].table")
            fk = self._column(ctable, child.foreign_key, f"children[{i}].foreign_key")
            ckey = self._column(ctable, child.key_column, f"children[{i}].key_column")
            self.children.append(_Child(ctable, fk, ckey, self._check_child_link(fk, f"children[{i}]")))
            leading = [list(idx.columns)[:1] for idx in ctable.indexes] + [list(ctable.primary_key.columns)[:1]]
            if not any(len(cols) == 1 and cols[0] is fk for cols in leading):
                log.warning("location %s: %s has no index led by %s; every batch will scan it",
                            location_id, ctable.fullname, fk.name)

        self._null_columns: list[sa.Column] = []
        self._hash_columns: list[sa.Column] = []
        if spec.anonymize is not None:
            self._null_columns = [self._column(self.table, n, "anonymize.set_null") for n in spec.anonymize.set_null]
            self._hash_columns = [self._column(self.table, n, "anonymize.hash") for n in spec.anonymize.hash]
            for column in self._null_columns:
                if not column.nullable:
                    self._refuse(f"anonymize.set_null: column {self._name(column)} is NOT NULL")
            for column in self._hash_columns:
                if not isinstance(column.type, sa.String) or isinstance(column.type, sa.Enum):
                    self._refuse(f"anonymize.hash: column {self._name(column)} is {column.type}, "
                                 "not a text column that can hold a hex hash")
                if column.type.length is not None and column.type.length < HASH_HEX_LENGTH:
                    self._refuse(f"anonymize.hash: column {self._name(column)} holds {column.type.length} "
                                 f"characters, a hex sha256 needs {HASH_HEX_LENGTH}")
            if self._key in self._null_columns + self._hash_columns or \
                    self._account in self._null_columns + self._hash_columns:
                self._refuse("anonymize: the key and account columns select the rows; they cannot be cleared")
        self._refuse_silent_references()

    # -- the Store interface ------------------------------------------------------------------

    def count(self, selector: Selector, after: str | None = None, upper: str | None = None, *,
              pending_anonymize: bool = False) -> int:
        """Rows matching the selector within (after, upper]; with ``pending_anonymize`` only the rows an
        ``anonymize`` would still change (what crash recovery counts in anonymize mode)."""
        where = self._where(selector, after, upper, pending_anonymize=pending_anonymize)
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(self.table).where(where)).scalar_one()

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
        self._where(selector, after, None, pending_anonymize=pending_anonymize)  # refuse a bad selector now
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
                batch = PendingBatch(after=cursor, upper=self._format_key(upper), count=count,
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
        matching = (select(self._key.label("key"))
                    .where(self._where(selector, after, None, pending_anonymize=pending_anonymize))
                    .order_by(self._key).limit(size)).subquery()
        numbered = select(matching.c.key, func.row_number().over(order_by=matching.c.key).label("n")).subquery()
        with self.engine.connect() as conn:
            last = conn.execute(select(numbered.c.key, numbered.c.n).order_by(numbered.c.n.desc()).limit(1)).first()
        return (size, None, 0) if last is None else (size, last.key, last.n)

    def delete(self, batch: PendingBatch) -> SqlOutcome:
        """Children first, then the location's rows of the batch, in one transaction."""
        selector = self._selector_of(batch)
        if batch.items.pending_anonymize:
            raise ValueError(f"location {self.location_id}: this batch was planned for anonymize (it counts "
                             "only rows not yet anonymized); plan deletions with batches(selector)")
        parents = self._where(selector, batch.after, batch.upper)

        def work(conn: sa.Connection) -> tuple[int, dict[str, int]]:
            children: dict[str, int] = {}
            for child in self.children:
                owned = fk_in = child.fk.in_(select(self._key).where(parents))
                if child.range_hint:  # the same rows, found through the foreign key's index
                    owned = and_(fk_in, *self._range(child.fk, batch.after, batch.upper))
                result = conn.execute(delete(child.table).where(owned))
                children[child.table.fullname] = children.get(child.table.fullname, 0) + result.rowcount
            return conn.execute(delete(self.table).where(parents)).rowcount, children

        (affected, children), seconds, retries = self._destructive(batch, work)
        self._observe(batch, affected, seconds, "deleted")
        return SqlOutcome(affected=affected, children=children, seconds=seconds, lock_retries=retries)

    def anonymize(self, batch: PendingBatch) -> SqlOutcome:
        """Clear the configured columns of the batch's rows not yet anonymized, in one UPDATE.

        ``set_null`` columns become NULL; ``hash`` columns become the hex sha256 of value || a salt drawn
        per store instance and never stored (NULL stays NULL; a value already hashed is kept). Rows
        with nothing left to clear are not touched and not counted, so a rerun affects 0 rows.
        """
        if not (self._null_columns or self._hash_columns):
            raise ValueError(f"location {self.location_id}: the spec names no anonymize columns")
        selector = self._selector_of(batch)
        where = self._where(selector, batch.after, batch.upper, pending_anonymize=True)
        values: dict[str, Any] = {c.name: None for c in self._null_columns}
        salt = sa.bindparam("retention_salt", self._salt, type_=sa.Text)
        for column in self._hash_columns:
            values[column.name] = sa.case((self._is_hashed(column), column),
                                          else_=_sha256_hex(column, salt))
        affected, seconds, retries = self._destructive(
            batch, lambda conn: conn.execute(update(self.table).where(where).values(values)).rowcount)
        self._observe(batch, affected, seconds, "anonymized")
        return SqlOutcome(affected=affected, seconds=seconds, lock_retries=retries)

    def latest(self, selector: Selector, anchor: str) -> datetime | None:
        """The latest ``anchor`` time among matching rows: when the last of them falls due."""
        column = self._timestamps[anchor]
        with self.engine.connect() as conn:
            value = conn.execute(select(func.max(column)).where(self._where(selector, None, None))).scalar_one()
        return value if value is None or value.tzinfo else value.replace(tzinfo=timezone.utc)

    def isolate(self, batch: PendingBatch) -> SqlOutcome:
        """Move the batch's rows to the ``isolate_to`` table in one statement: the rows deleted are exactly
        the rows inserted (``WITH moved AS (DELETE … RETURNING …) INSERT … SELECT FROM moved``).

        Rows kept under law leave every table normal processing reads (DPA 7(b)); the isolated table
        holds the same columns, and the sweep deletes the rows there when their period ends.
        """
        vault = self._isolated_table()
        parents = self._where(self._selector_of(batch), batch.after, batch.upper)
        columns = [c.name for c in self.table.columns]
        moved = delete(self.table).where(parents).returning(*self.table.columns).cte("moved")
        move = sa.insert(vault).from_select(columns, select(*(moved.c[name] for name in columns))) \
            .returning(vault.c[self._key.name])  # the driver's rowcount is -1 for this statement
        affected, seconds, retries = self._destructive(batch, lambda conn: len(conn.execute(move).all()))
        self._observe(batch, affected, seconds, "isolated")
        return SqlOutcome(affected=affected, seconds=seconds, lock_retries=retries)

    def _destructive(self, batch: PendingBatch, work: Callable[[sa.Connection], Any]) -> tuple[Any, float, int]:
        """Run ``work`` in one transaction bounded by ``SET LOCAL lock_timeout`` and ``statement_timeout``;
        on a lock timeout roll back, back off and run it again, at most ``max_lock_retries`` times.
        Returns (work's result, seconds of the transaction that committed, lock-timeout retries)."""
        attempts = 0

        def attempt() -> tuple[Any, float]:
            nonlocal attempts
            if attempts and batch.recheck is not None:
                batch.recheck()  # e.g. a legal hold placed while this batch waited: it raises, nothing is tried
            attempts += 1
            started = time.perf_counter()
            with self.engine.begin() as conn:
                # set_config(..., true) is SET LOCAL: it ends with the transaction, so the pooled
                # connection goes back to the server's settings for whoever uses it next.
                conn.execute(sa.text("SELECT set_config('lock_timeout', :lock, true), "
                                     "set_config('statement_timeout', :statement, true)"),
                             {"lock": f"{self.lock_timeout_ms}ms", "statement": f"{self.statement_timeout_ms}ms"})
                result = work(conn)
            return result, time.perf_counter() - started

        def note_lock_timeout(state: Any) -> None:
            log.warning("location %s: batch (%s, %s] met an application row lock (lock_timeout %d ms); "
                        "rolled back, retry %d of %d", self.location_id, batch.after, batch.upper,
                        self.lock_timeout_ms, state.attempt_number, self.max_lock_retries)

        retrying = Retrying(retry=retry_if_exception(_is_lock_timeout),
                            stop=stop_after_attempt(self.max_lock_retries + 1),
                            wait=wait_exponential_jitter(multiplier=0.1, max=5.0, jitter=0.1), sleep=self._sleep,
                            before_sleep=note_lock_timeout, reraise=True)
        try:
            result, seconds = retrying(attempt)
        except DBAPIError as exc:
            what = f"location {self.location_id}: batch ({batch.after}, {batch.upper}]"
            if _is_lock_timeout(exc):
                raise BatchLocked(f"{what} still met application row locks after {attempts} attempts "
                                  f"(lock_timeout {self.lock_timeout_ms} ms, {attempts - 1} retries with "
                                  "back-off); nothing of the batch was deleted or changed; run again later",
                                  retries=attempts - 1) from None
            if _sqlstate(exc) == QUERY_CANCELED:
                raise RuntimeError(f"{what}: a statement ran past statement_timeout {self.statement_timeout_ms} "
                                   "ms and was cancelled; nothing of the batch was deleted or changed (rolled "
                                   "back); a smaller batch or an index may be needed") from None
            raise
        return result, seconds, attempts - 1

    def _isolated_table(self) -> sa.Table:
        if self.spec.isolate_to is None:
            raise ValueError(f"location {self.location_id}: systems.yaml names no isolate_to table")
        vault = self._reflect(self.spec.isolate_to, "isolate_to")
        missing = sorted({c.name for c in self.table.columns} - {c.name for c in vault.columns})
        if missing:
            self._refuse(f"isolate_to: {vault.fullname} lacks the columns {', '.join(missing)}")
        return vault

    def verify(self, selector: Selector, *, pending_anonymize: bool = False) -> SqlResidue:
        """Rows still matching (with ``pending_anonymize``: still identifiable) and child rows pointing at them."""
        where = self._where(selector, None, None, pending_anonymize=pending_anonymize)
        with self.engine.connect() as conn:
            remaining = conn.execute(select(func.count()).select_from(self.table).where(where)).scalar_one()
            children = {}
            for child in self.children:
                n = conn.execute(select(func.count()).select_from(child.table)
                                 .where(child.fk.in_(select(self._key).where(where)))).scalar_one()
                children[child.table.fullname] = children.get(child.table.fullname, 0) + n
        return SqlResidue(remaining=remaining, children=children)

    def export(self, selector: Selector, sink: Path | str, *, chunk_rows: int = 1_000) -> int:
        """Write matching rows as JSON Lines ``sink/<table>.jsonl``, each child table in its own file.

        Streams through a server-side cursor inside one REPEATABLE READ transaction, so the parent and
        child files are one consistent snapshot. Each file is written under a ``.partial`` name and
        renamed when complete. Returns the number of the location's rows written.
        """
        destination = Path(sink)
        destination.mkdir(parents=True, exist_ok=True)
        where = self._where(selector, None, None)
        written = {}
        with self.engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
            with conn.begin():
                written[self.table.fullname] = _write_jsonl(
                    conn, select(self.table).where(where).order_by(self._key),
                    destination / f"{self.table.fullname}.jsonl", chunk_rows)
                for child in self.children:
                    written[child.table.fullname] = _write_jsonl(
                        conn, select(child.table).where(child.fk.in_(select(self._key).where(where)))
                        .order_by(child.key), destination / f"{child.table.fullname}.jsonl", chunk_rows)
        log.info("location %s: exported %s", self.location_id,
                 ", ".join(f"{n} rows of {t}" for t, n in written.items()))
        return written[self.table.fullname]

    # -- selection ----------------------------------------------------------------------------

    def _where(self, selector: Selector, after: str | None, upper: str | None, *,
               pending_anonymize: bool = False) -> ColumnElement[bool]:
        clauses: list[ColumnElement[bool]] = [self._account == self._read(self._account, selector.account_id,
                                                                          "account id")]
        if selector.anchor is not None:
            column = self._timestamps.get(selector.anchor)  # type: ignore[arg-type]
            if column is None:
                raise ValueError(f"location {self.location_id}: no timestamp column for anchor "
                                 f"{selector.anchor!r} (the spec maps {sorted(self._timestamps)})")
            clauses.append(_at_or_before(column, selector.cutoff))  # NULL <= x is never true
        clauses += self._range(self._key, after, upper)
        if pending_anonymize:
            clauses.append(self._pending_anonymize())
        return and_(*clauses)

    def _range(self, column: sa.Column, after: str | None, upper: str | None) -> list[ColumnElement[bool]]:
        """``after < column <= upper`` with the cursors read back as the key's type."""
        bounds = []
        if after is not None:
            bounds.append(column > self._read(self._key, after, "cursor"))
        if upper is not None:
            bounds.append(column <= self._read(self._key, upper, "cursor"))
        return bounds

    def _read(self, column: sa.Column, text: str, what: str) -> Any:
        """``text`` as a value of the column's type (integer, uuid or text); the value is not echoed."""
        python_type = _python_type(column)
        if python_type not in (int, uuid.UUID):
            return text
        try:
            return python_type(text)
        except (TypeError, ValueError):
            raise ValueError(f"location {self.location_id}: a {what} for {self._name(column)} must be "
                             f"{'an integer' if python_type is int else 'a uuid'}") from None

    def _pending_anonymize(self) -> ColumnElement[bool]:
        """A row still holding something to clear: a set_null column not NULL, or a hash-column holding a
        value that is not a hex sha256. (An original value that already is a 64-hex-digit string reads
        as done; personal data such as names, e-mail or IP addresses never has that shape.)"""
        if not (self._null_columns or self._hash_columns):
            raise ValueError(f"location {self.location_id}: the spec names no anonymize columns")
        pending = [c.is_not(None) for c in self._null_columns]
        pending += [and_(c.is_not(None), ~self._is_hashed(c)) for c in self._hash_columns]
        return or_(*pending)

    @staticmethod
    def _is_hashed(column: sa.Column) -> ColumnElement[bool]:
        return and_(func.length(column) == HASH_HEX_LENGTH, column.regexp_match(_HASHED_PATTERN))

    # -- batches and sizing -------------------------------------------------------------------

    def _selector_of(self, batch: PendingBatch) -> Selector:
        plan = batch.items
        if not isinstance(plan, _Plan) or plan.selector is None:
            raise ValueError(f"location {self.location_id}: a batch must come from this store's batches()")
        return plan.selector

    def _observe(self, batch: PendingBatch, rows: int, seconds: float, verb: str) -> None:
        planned = batch.items.size
        self.sizer.observe(planned, rows, seconds)
        log.info("location %s: %s %d rows in %.3f s (batch of %d planned; next %d)",
                 self.location_id, verb, rows, seconds, planned, self.sizer.size)

    # -- reflection and keys ------------------------------------------------------------------

    def _reflect(self, qualified: str, field_name: str = "table") -> sa.Table:
        schema, _, name = qualified.rpartition(".")
        try:
            return sa.Table(name, sa.MetaData(), schema=schema or None, autoload_with=self.engine)
        except NoSuchTableError:
            self._refuse(f"{field_name}: table {qualified!r} does not exist")

    def _column(self, table: sa.Table, name: str, field_name: str) -> sa.Column:
        if name not in table.c:
            self._refuse(f"{field_name}: column {name!r} does not exist in table {table.fullname!r}")
        return table.c[name]

    def _check_child_link(self, fk: sa.Column, field_name: str) -> bool:
        """Refuse a child column unless a foreign key constraint ties it to our key: a column named by
        mistake would otherwise have its rows matched against our keys and deleted. Returns whether the
        batch's key range may also be applied to the child column (same ordering: integer or uuid keys,
        or text under the same collation), which lets the child delete use the column's index."""
        default = sa.inspect(self.engine).default_schema_name
        ours = (self.table.schema or default, self.table.name, self._key.name)
        referred = [(c.column.table.schema or default, c.column.table.name, c.column.name) for c in fk.foreign_keys]
        if ours not in referred:
            self._refuse(f"{field_name}.foreign_key: {self._name(fk)} has no foreign key constraint referencing "
                         f"the key {self._name(self._key)}; add one (NOT VALID is enough), or fix the spec")
        if _python_type(self._key) is str:
            return getattr(fk.type, "collation", None) == getattr(self._key.type, "collation", None)
        return _python_type(fk) is _python_type(self._key)

    def _require_unique_key(self) -> None:
        key = self._key
        unique = [list(self.table.primary_key.columns)]
        unique += [list(c.columns) for c in self.table.constraints if isinstance(c, sa.UniqueConstraint)]
        unique += [list(i.columns) for i in self.table.indexes if i.unique]
        if not any(len(cols) == 1 and cols[0] is key for cols in unique):
            self._refuse(f"key_column: {self._name(key)} is not unique on its own (no primary key, unique "
                         "constraint or unique index on it alone); the batch cursor needs a unique key")
        if key.nullable:
            self._refuse(f"key_column: {self._name(key)} is nullable; rows with a NULL key could not be batched")

    def _require_key_type(self, column: sa.Column) -> None:
        if _python_type(column) in (int, str, uuid.UUID):
            return
        self._refuse(f"key_column: {self._name(column)} is {column.type}; keys must be integer, text or uuid")

    @staticmethod
    def _format_key(value: Any) -> str:
        return str(value)

    def _refuse_silent_references(self) -> None:
        """Refuse foreign keys into our table (or a child) that make the database change rows on its
        own (ON DELETE CASCADE / SET NULL / SET DEFAULT), unless they are the declared child links:
        such rows would be deleted or altered uncounted, possibly outside the selector."""
        inspector = sa.inspect(self.engine)
        default = inspector.default_schema_name

        def qualified(schema: str | None, name: str) -> tuple[str, str]:
            return (schema or default, name)

        targets = {qualified(t.schema, t.name) for t in [self.table] + [c.table for c in self.children]}
        declared = {(qualified(c.table.schema, c.table.name), c.fk.name) for c in self.children}
        for schema in sorted({schema for schema, _ in targets}):
            for (ref_schema, ref_name), fks in inspector.get_multi_foreign_keys(schema=schema).items():
                referrer = qualified(ref_schema, ref_name)
                for fk in fks:
                    target = qualified(fk.get("referred_schema"), fk["referred_table"])
                    ondelete = ((fk.get("options") or {}).get("ondelete") or "").upper()
                    columns = fk["constrained_columns"]
                    if target in targets and ondelete in ("CASCADE", "SET NULL", "SET DEFAULT") and \
                            not (len(columns) == 1 and (referrer, columns[0]) in declared):
                        self._refuse(f"children: table {'.'.join(referrer)!r} references {'.'.join(target)!r} "
                                     f"with ON DELETE {ondelete}, which would change its rows silently and "
                                     "uncounted; list it under children (or change the foreign key)")

    def _refuse(self, message: str) -> Any:
        raise ValueError(f"location {self.location_id}: {message}")

    @staticmethod
    def _name(column: sa.Column) -> str:
        return f"{column.table.fullname}.{column.name}"


def _sqlstate(exc: BaseException) -> str | None:
    """PostgreSQL's SQLSTATE of a driver error wrapped by SQLAlchemy (psycopg: ``sqlstate``)."""
    return getattr(getattr(exc, "orig", None), "sqlstate", None)


def _is_lock_timeout(exc: BaseException) -> bool:
    return isinstance(exc, DBAPIError) and _sqlstate(exc) == LOCK_NOT_AVAILABLE


def _python_type(column: sa.Column) -> type | None:
    try:
        return column.type.python_type
    except NotImplementedError:
        return None


@dataclass(frozen=True)
class _Child:
    table: sa.Table
    fk: sa.Column  # points at the parent's key
    key: sa.Column  # orders the export
    range_hint: bool  # the parent's key range applies to fk too


@dataclass(frozen=True)
class _Plan:
    """What a PendingBatch carries for this store: its planned size and the selector it was built for."""

    size: int
    selector: Selector | None = None
    pending_anonymize: bool = False


def _at_or_before(column: sa.Column, cutoff: datetime) -> ColumnElement[bool]:
    """``column <= cutoff`` for the column's type; NULL never matches.

    ``timestamp with time zone`` compares instants. A naive ``timestamp`` is read as UTC. A ``date``
    column matches only days that ended at or before the cutoff (the day is read as a UTC day), so a
    record is never taken for older than it may be.
    """
    utc = cutoff.astimezone(timezone.utc)
    if isinstance(column.type, sa.DateTime):
        if column.type.timezone:
            return column <= utc
        return column <= utc.replace(tzinfo=None)
    return column <= (utc - timedelta(days=1)).date()


def _sha256_hex(column: sa.Column, salt: Any) -> ColumnElement[str]:
    """Hex sha256 of ``column || salt`` computed by PostgreSQL (NULL in, NULL out)."""
    return func.encode(func.sha256(func.convert_to(column.concat(salt), "UTF8")), "hex", type_=sa.Text)


def _write_jsonl(conn: sa.Connection, statement: sa.Select, path: Path, chunk_rows: int) -> int:
    """Stream ``statement``'s rows into ``path`` as JSON Lines (written aside, renamed when done)."""
    partial = path.with_name(path.name + ".partial")
    rows = 0
    with partial.open("w", encoding="utf-8") as out:
        result = conn.execution_options(yield_per=chunk_rows).execute(statement)
        for row in result:
            out.write(json.dumps(dict(row._mapping), default=_json_value, ensure_ascii=False))
            out.write("\n")
            rows += 1
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial, path)
    return rows


def _json_value(value: Any) -> Any:
    """JSON for what a driver returns beyond JSON's own types: ISO 8601 times (UTC when aware)."""
    if isinstance(value, datetime):
        return (value.astimezone(timezone.utc) if value.tzinfo else value).isoformat()
    if isinstance(value, (date, dtime)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return b64encode(bytes(value)).decode("ascii")
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)  # UUID, ipaddress, ranges, ...
