"""ISO-8601 durations (``P2Y``, ``P30D``, ``PT12H``) applied with calendar arithmetic in UTC."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pendulum

# Whole units only: a fractional year has no unambiguous calendar meaning for a retention period.
_ISO_DURATION = re.compile(
    r"^P(?!$)(?:(?P<years>\d+)Y)?(?:(?P<months>\d+)M)?(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+)S)?)?$"
)
_UNITS = ("years", "months", "weeks", "days", "hours", "minutes", "seconds")
# Only for comparing durations against bounds, never for computing a cutoff.
_NOMINAL_SECONDS = {
    "years": 365 * 86400, "months": 30 * 86400, "weeks": 7 * 86400, "days": 86400,
    "hours": 3600, "minutes": 60, "seconds": 1,
}


@dataclass(frozen=True, order=False)
class IsoDuration:
    text: str
    years: int = 0
    months: int = 0
    weeks: int = 0
    days: int = 0
    hours: int = 0
    minutes: int = 0
    seconds: int = 0

    @classmethod
    def parse(cls, text: str) -> IsoDuration:
        match = _ISO_DURATION.match(text) if isinstance(text, str) else None
        if match is None:
            raise ValueError(
                f"{text!r} is not an ISO-8601 duration in whole units (e.g. P30D, P2Y, P1Y6M, PT12H)"
            )
        return cls(text, **{unit: int(match[unit] or 0) for unit in _UNITS})

    def before(self, moment: pendulum.DateTime) -> pendulum.DateTime:
        """The instant this long before ``moment``, month ends clamped (Mar 31 - P1M = Feb 28/29)."""
        return moment.subtract(**self._parts())

    def after(self, moment: pendulum.DateTime) -> pendulum.DateTime:
        return moment.add(**self._parts())

    @property
    def is_positive(self) -> bool:
        """Longer than zero. ``P0D``, ``PT0S``, ``P0Y0M`` ... are zero: as a retention period they would make
        every record due the moment it exists, so the rules refuse them (the regex already refuses a sign)."""
        return any(getattr(self, unit) > 0 for unit in _UNITS)

    @property
    def nominal_seconds(self) -> int:
        return sum(getattr(self, unit) * _NOMINAL_SECONDS[unit] for unit in _UNITS)

    def _parts(self) -> dict[str, int]:
        return {unit: getattr(self, unit) for unit in _UNITS}

    def __str__(self) -> str:
        return self.text
