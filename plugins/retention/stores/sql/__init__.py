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
  a NULL timestamp cannot be dated and is never selected. With a data subject (``Selector.subject``),
  only the account's rows where a ``subjects:`` column holds one of the subject's values of its kind
  (``column = ANY(:values)``, one bound array per kind); a location keeping none of the subject's kinds
  selects nothing. Children of the selected rows go with them (delete, verify, export). ``tally`` counts
  whole accounts and refuses a subject; a ``Cohort`` cannot carry one.
- ``check_subject_lookups`` reads the catalog to confirm each subject column's index exists, is valid and
  leads with the column (``SubjectLookupError`` otherwise); ``linked`` reads the identifiers on a
  subject's rows (identity expansion), bounded by a limit.

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

One module per job: ``schema`` (reflection and the refusals), ``selection`` (predicates), ``sizing``
(``BatchSizer``), ``transactions`` (lock and statement timeouts, retries), ``statements`` (delete,
anonymize, isolate), ``export`` (JSON Lines), ``subjects`` (index checks, identity expansion), ``results``
and ``store`` (``SqlStore``).
"""

from retention.stores.sql.results import SqlOutcome, SqlResidue
from retention.stores.sql.sizing import BatchSizer
from retention.stores.sql.store import SqlStore

__all__ = ["BatchSizer", "SqlOutcome", "SqlResidue", "SqlStore"]
