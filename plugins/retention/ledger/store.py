"""The ``Ledger``: one object over the ledger database, assembled from the parts that each do one job.

- ``transactions.Transactions``: the engine, write and read sessions, lock timeouts and retries;
- ``events.EventLog``: appending to the hash chain, reading and verifying it;
- ``texts.KeptTexts``: free text kept erasable outside the chain;
- ``holds.LegalHolds``: legal holds and the guard every deleting path calls;
- ``runs.RunsAndTasks``: runs, their planned tasks and the claim of a task;
- ``cohorts.CohortTasks``: claiming, checkpointing and finishing many tasks of one location at once;
- ``subject_requests.SubjectRequests``: data subject requests, their identifiers and their erasure;
- ``credentials.CustomerCredentials``: the customer API's credentials;
- ``database``: the URL, the engine and the schema, which ``Ledger.open`` uses.

The parts are base classes of ``Ledger`` rather than objects it holds: every part works in the same
transactions (``self.session()``, ``self._reader()``), and composition would repeat each of the 29 public
methods as a forwarding method with the same signature, two places to change for every one. Each part
subclasses ``Transactions`` (``RunsAndTasks`` also ``EventLog``, whose ``append`` it calls), so the type
checker sees what each uses.
"""

from __future__ import annotations

from retention.ledger.cohorts import CohortTasks
from retention.ledger.credentials import CustomerCredentials
from retention.ledger.database import open_engine
from retention.ledger.holds import LegalHolds
from retention.ledger.subject_requests import SubjectRequests
from retention.ledger.texts import KeptTexts


class Ledger(CohortTasks, LegalHolds, KeptTexts, SubjectRequests, CustomerCredentials):
    """Append-only, hash-chained ledger. Use ``Ledger.open()``; close it (or use ``with``)."""

    @classmethod
    def open(cls, url: str | None = None) -> Ledger:
        """Connect. A SQLite ledger is migrated on the spot; any other must already be at head."""
        return cls(open_engine(url))


__all__ = ["Ledger"]
