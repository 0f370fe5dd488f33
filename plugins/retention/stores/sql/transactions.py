"""Short locks, bounded waits: every destructive transaction of a SQL location.

Each starts with ``SET LOCAL lock_timeout`` and ``SET LOCAL statement_timeout``. A batch that meets an
application's row lock gives up after the lock timeout instead of waiting behind it while holding its own
row locks; its transaction rolls back whole, and after a back-off it is tried again, at most
``max_lock_retries`` times (then ``BatchLocked``). Before each retry the batch's ``recheck`` runs (the
engine's legal-hold check). A statement past its timeout is not retried: the same batch would be as slow.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from retention.stores.base import BatchLocked

log = logging.getLogger(__name__)

LOCK_NOT_AVAILABLE = "55P03"  # SQLSTATE of a lock_timeout (and of NOWAIT)
QUERY_CANCELED = "57014"  # SQLSTATE of a statement_timeout (and of a cancel request)

T = TypeVar("T")


class Ranged(Protocol):
    """A batch as a transaction needs it: its key range for messages, and the check to run before a retry
    (``PendingBatch`` and ``CohortBatch``)."""

    @property
    def after(self) -> str | None: ...

    @property
    def upper(self) -> str: ...

    @property
    def recheck(self) -> Callable[[], None] | None: ...


class BoundedTransactions:
    """Runs one location's destructive work in transactions bounded by its lock and statement timeouts."""

    def __init__(self, engine: Engine, location_id: str, *, lock_timeout_ms: int, statement_timeout_ms: int,
                 max_lock_retries: int, sleep: Callable[[float], None] = time.sleep) -> None:
        if max_lock_retries < 0:
            raise ValueError("max_lock_retries must be 0 or more")
        self.engine = engine
        self.location_id = location_id
        self.lock_timeout_ms = lock_timeout_ms
        self.statement_timeout_ms = statement_timeout_ms
        self.max_lock_retries = max_lock_retries
        self._sleep = sleep

    def run(self, batch: Ranged, work: Callable[[sa.Connection], T]) -> tuple[T, float, int]:
        """Run ``work`` in one transaction bounded by ``SET LOCAL lock_timeout`` and ``statement_timeout``;
        on a lock timeout roll back, back off and run it again, at most ``max_lock_retries`` times.
        Returns (work's result, seconds of the transaction that committed, lock-timeout retries)."""
        attempts = 0

        def attempt() -> tuple[T, float]:
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

        def note_lock_timeout(state: RetryCallState) -> None:
            log.warning("location %s: batch (%s, %s] met an application row lock (lock_timeout %d ms); "
                        "rolled back, retry %d of %d", self.location_id, batch.after, batch.upper,
                        self.lock_timeout_ms, state.attempt_number, self.max_lock_retries)

        retrying = Retrying(retry=retry_if_exception(is_lock_timeout),
                            stop=stop_after_attempt(self.max_lock_retries + 1),
                            wait=wait_exponential_jitter(multiplier=0.1, max=5.0, jitter=0.1), sleep=self._sleep,
                            before_sleep=note_lock_timeout, reraise=True)
        try:
            result, seconds = retrying(attempt)
        except DBAPIError as exc:
            what = f"location {self.location_id}: batch ({batch.after}, {batch.upper}]"
            if is_lock_timeout(exc):
                raise BatchLocked(f"{what} still met application row locks after {attempts} attempts "
                                  f"(lock_timeout {self.lock_timeout_ms} ms, {attempts - 1} retries with "
                                  "back-off); nothing of the batch was deleted or changed; run again later",
                                  retries=attempts - 1) from None
            if sqlstate(exc) == QUERY_CANCELED:
                raise RuntimeError(f"{what}: a statement ran past statement_timeout {self.statement_timeout_ms} "
                                   "ms and was cancelled; nothing of the batch was deleted or changed (rolled "
                                   "back); a smaller batch or an index may be needed") from None
            raise
        return result, seconds, attempts - 1


def sqlstate(exc: BaseException) -> str | None:
    """PostgreSQL's SQLSTATE of a driver error wrapped by SQLAlchemy (psycopg: ``sqlstate``)."""
    state = getattr(getattr(exc, "orig", None), "sqlstate", None)
    return state if isinstance(state, str) else None


def is_lock_timeout(exc: BaseException) -> bool:
    return isinstance(exc, DBAPIError) and sqlstate(exc) == LOCK_NOT_AVAILABLE
