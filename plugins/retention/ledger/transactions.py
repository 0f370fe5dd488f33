"""Transactions on the ledger database, the base every part of ``Ledger`` builds on.

Every write takes the chain head first (``SELECT ... FOR UPDATE`` on PostgreSQL; on SQLite every write
transaction is ``BEGIN IMMEDIATE``), so appenders in any number of processes serialize and sequence numbers
never collide or skip.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Self, TypeVar

from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from retention.ledger.database import READ_ONLY

_log = logging.getLogger(__name__)
# PostgreSQL write transactions wait at most this long for a lock (the chain head, a task row), and no
# statement runs longer: an appender stuck behind a hung transaction backs off and tries again, a bounded
# number of times, instead of holding a worker slot and its own locks for ever.
LOCK_TIMEOUT_MS, STATEMENT_TIMEOUT_MS, LOCK_ATTEMPTS = 5_000, 30_000, 5
_LOCK_NOT_AVAILABLE = "55P03"
T = TypeVar("T")


class LedgerBusy(RuntimeError):
    """A ledger write waited past its lock timeout on every attempt."""


class Transactions:
    """An engine with a writer and a reader session factory; closed with ``close()`` or ``with``."""

    def __init__(self, engine: Engine, *, lock_timeout_ms: int = LOCK_TIMEOUT_MS,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.engine = engine
        self.lock_timeout_ms = lock_timeout_ms
        self._sleep = sleep  # the back-off between attempts (tests pass one that acts instead of waiting)
        self._writer = sessionmaker(engine, expire_on_commit=False)
        self._reader = sessionmaker(engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A write transaction: pass it as ``session=`` so your writes and the events commit together."""
        with self._writer.begin() as s:
            if self.engine.dialect.name == "postgresql":  # SQLite waits through its busy_timeout instead
                s.execute(text(f"SET LOCAL lock_timeout = {int(self.lock_timeout_ms)}"))
                s.execute(text(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}"))
            yield s

    def _retrying(self, write: Callable[[], T], what: str) -> T:
        """Run a write that owns its transaction again after a lock timeout, backing off; ``LedgerBusy`` after
        ``LOCK_ATTEMPTS``. Each wait is logged (the ledger itself is what cannot be written then)."""
        for attempt in range(1, LOCK_ATTEMPTS + 1):
            try:
                return write()
            except DBAPIError as exc:
                if getattr(exc.orig, "sqlstate", None) != _LOCK_NOT_AVAILABLE:
                    raise
                if attempt == LOCK_ATTEMPTS:
                    raise LedgerBusy(f"ledger: {what} waited past its lock timeout ({self.lock_timeout_ms} ms) "
                                     f"{LOCK_ATTEMPTS} times; another transaction holds the lock") from exc
                _log.warning("ledger.lock_timeout what=%s attempt=%d", what, attempt)
                self._sleep(min(5.0, 0.1 * 2 ** attempt))
        raise AssertionError("unreachable")

    @contextmanager
    def _tx(self, session: Session | None) -> Iterator[Session]:
        if session is not None:  # the caller's transaction: the caller commits
            yield session
        else:
            with self.session() as s:
                yield s
