"""The two clocks the ledger reads: this process's, for rows only it writes, and the database's."""

from __future__ import annotations

import pendulum
from sqlalchemy import text
from sqlalchemy.orm import Session

from retention.ledger.models import utc


def now() -> pendulum.DateTime:
    return pendulum.now("UTC")


def db_now(s: Session) -> pendulum.DateTime:
    """The ledger database's clock. Holds are placed by the api-server and checked by workers: one clock
    for both means a hold placed "now" is in force on every machine, whatever their own clocks say."""
    if s.get_bind().dialect.name == "postgresql":
        value = s.execute(text("SELECT clock_timestamp()")).scalar_one()
    else:  # SQLite: UTC text with milliseconds
        value = pendulum.parse(s.execute(text("SELECT strftime('%Y-%m-%dT%H:%M:%fZ', 'now')")).scalar_one())
    return utc(value)
