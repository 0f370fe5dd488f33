"""Daily care of data subject requests: open ones near or past their legal deadline, and the identifiers of closed
ones whose appeal window has passed (they are personal data too: erased, their keyed hashes stay in the chain)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from retention.ledger import Ledger
from retention.ledger.subject_requests import CLOSED
from retention.settings import Settings


@dataclass(frozen=True)
class DeadlineAlert:
    request_id: str
    account_id: str
    request_type: str
    status: str
    deadline_at: datetime
    days_left: int  # whole days until the deadline, rounded up; 0 or less: due today or past

    @property
    def line(self) -> str:
        """The alert as one line of a mail (ids and dates only)."""
        when = (f"{self.days_left} day(s) left" if self.days_left > 0
                else "due today" if self.days_left == 0 else f"{-self.days_left} day(s) PAST its deadline")
        return (f"{self.request_type} request {self.request_id} of {self.account_id} ({self.status}): deadline "
                f"{self.deadline_at.strftime('%Y-%m-%d %H:%M')} UTC, {when}")


def deadline_alerts(ledger: Ledger, settings: Settings, now: datetime) -> list[DeadlineAlert]:
    """Open requests whose deadline is within ``subject_deadline_warning_days`` of ``now`` or past, soonest first."""
    window = timedelta(days=settings.subject_deadline_warning_days)
    alerts = [DeadlineAlert(row.id, row.account_id, row.request_type, row.status, row.deadline_at,
                            math.ceil((row.deadline_at - now) / timedelta(days=1)))
              for row in ledger.subject_requests(open_only=True) if row.deadline_at - now <= window]
    return sorted(alerts, key=lambda alert: alert.deadline_at)


def alert_lines(ledger: Ledger, settings: Settings, now: datetime) -> list[str]:
    """``deadline_alerts`` as the lines of the daily mail."""
    return [alert.line for alert in deadline_alerts(ledger, settings, now)]


def erase_closed_identifiers(ledger: Ledger, settings: Settings, now: datetime, *, actor: str) -> list[str]:
    """Erase the identifiers of every request closed more than ``subject_appeal_days`` before ``now``; returns
    the ids of the requests whose identifiers were erased by this call."""
    window = timedelta(days=settings.subject_appeal_days)
    erased = []
    for row in ledger.subject_requests():
        if (row.status in CLOSED and row.identifiers is not None and row.closed_at is not None
                and now - row.closed_at > window):
            ledger.erase_request_identifiers(row.id, actor=actor)
            erased.append(row.id)
    return erased
