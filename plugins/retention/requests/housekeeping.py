"""Daily care of data subject requests: open ones near or past their legal deadline, and the identifiers of closed
ones whose appeal window has passed (they are personal data too: erased, their keyed hashes stay in the chain)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from retention.ledger import Ledger
from retention.settings import Settings

DAY = 86_400.0  # seconds


@dataclass(frozen=True)
class DeadlineAlert:
    request_id: str
    account_id: str
    request_type: str
    status: str
    deadline_at: datetime
    days_left: int  # before the deadline: whole days left, rounded up; past it: minus the whole days past

    @property
    def overdue(self) -> bool:
        return self.days_left <= 0

    @property
    def line(self) -> str:
        """The alert as one line of a mail (ids and dates only)."""
        when = (f"{self.days_left} day(s) left" if not self.overdue
                else f"PAST its deadline by {-self.days_left} full day(s)" if self.days_left else "PAST its deadline")
        return (f"{self.request_type} request {self.request_id} of {self.account_id} ({self.status}): deadline "
                f"{self.deadline_at.strftime('%Y-%m-%d %H:%M')} UTC, {when}")


def deadline_alerts(ledger: Ledger, settings: Settings, now: datetime) -> list[DeadlineAlert]:
    """Open requests whose deadline is within ``subject_deadline_warning_days`` of ``now`` or past, soonest first."""
    window = timedelta(days=settings.subject_deadline_warning_days)
    alerts = [DeadlineAlert(row.id, row.account_id, row.request_type, row.status, row.deadline_at,
                            _days_left((row.deadline_at - now).total_seconds() / DAY))
              for row in ledger.subject_requests(open_only=True) if row.deadline_at - now <= window]
    return sorted(alerts, key=lambda alert: alert.deadline_at)


def _days_left(days: float) -> int:
    """Rounded up while time is left (a part of a day is a day to act in); past the deadline, the full days past,
    as a negative number (0: past it by less than a day)."""
    return math.ceil(days) if days > 0 else -math.floor(-days)


def alert_lines(ledger: Ledger, settings: Settings, now: datetime) -> list[str]:
    """``deadline_alerts`` as the lines of the daily mail."""
    return [alert.line for alert in deadline_alerts(ledger, settings, now)]


def erase_closed_identifiers(ledger: Ledger, settings: Settings, now: datetime, *, actor: str) -> list[str]:
    """Erase the identifiers of every request closed more than ``subject_appeal_days`` before ``now``; returns
    the ids of the requests whose identifiers were erased by this call. Only those requests are read
    (``Ledger.closed_with_identifiers``), not every request the ledger holds."""
    due = ledger.closed_with_identifiers(closed_before=now - timedelta(days=settings.subject_appeal_days))
    for request_id in due:
        ledger.erase_request_identifiers(request_id, actor=actor)
    return due
