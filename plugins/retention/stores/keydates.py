"""Dating a record by one segment of its key (S3 object keys, Redis keys): the latest instant it can stand for."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta
from typing import Literal

from retention.rules.inventory import KeySegmentTime

Precision = Literal["year", "month", "day", "hour", "minute", "second"]
_UNITS: tuple[Precision, ...] = ("year", "month", "day", "hour", "minute", "second")
_STEP = {"day": timedelta(days=1), "hour": timedelta(hours=1), "minute": timedelta(minutes=1)}


class KeyClock:
    """Dates a key from one of its segments: the latest instant the segment can stand for, or None.

    The precision of the format is found by round-tripping a probe instant through it: "%Y-%m-%d"
    keeps the day, so "2025-03-01" stands for up to 2025-03-01T23:59:59.999999Z. Seconds and finer
    are instants (as LastModified is). A format that loses the hour of a PM time ("%I" without "%p")
    counts as day-precise, so it errs towards keeping.
    """

    _PROBE = datetime(2001, 11, 23, 16, 35, 47, 123456, tzinfo=UTC)

    def __init__(self, spec: KeySegmentTime, where: str, separator: str = "/") -> None:
        self.separator = separator  # "/" for object keys, ":" for Redis keys
        self.segment = spec.key_segment
        self.format = spec.format
        try:
            back = as_utc(datetime.strptime(self._PROBE.strftime(self.format), self.format))
        except ValueError as exc:
            raise ValueError(f"{where}: timestamp format {self.format!r} does not parse what it prints "
                             f"({exc}); use strptime directives such as %Y-%m-%d") from None
        precision: Precision | None = None
        for unit in _UNITS:
            if getattr(back, unit) != getattr(self._PROBE, unit):
                break
            precision = unit  # the finest unit that survives along with every coarser one
        if precision is None:
            raise ValueError(f"{where}: timestamp format {self.format!r} carries no year; "
                             "a key segment must date the object")
        self.precision: Precision = precision

    def latest(self, key: str) -> datetime | None:
        parts = key.split(self.separator)
        if self.segment >= len(parts):
            return None
        try:
            start = as_utc(datetime.strptime(parts[self.segment], self.format))
        except ValueError:
            return None
        return period_end(start, self.precision)


def as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def period_end(parsed: datetime, precision: Precision) -> datetime:
    """The last microsecond of the period ``parsed`` falls in; seconds and finer are instants."""
    if precision == "second":
        return parsed
    kept = _UNITS.index(precision)  # units up to this index keep their value, finer ones start over
    start = datetime(parsed.year, parsed.month if kept >= 1 else 1, parsed.day if kept >= 2 else 1,
                     parsed.hour if kept >= 3 else 0, parsed.minute if kept >= 4 else 0, tzinfo=parsed.tzinfo)
    if precision == "year":
        following = start.replace(year=start.year + 1)
    elif precision == "month":
        following = start + timedelta(days=calendar.monthrange(start.year, start.month)[1])
    else:
        following = start + _STEP[precision]
    return following - timedelta(microseconds=1)
