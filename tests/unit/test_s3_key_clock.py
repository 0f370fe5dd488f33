"""Dating an object from a key segment: coarse formats stand for the end of their period, never its start."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from retention.rules.inventory import KeySegmentTime
from retention.stores.s3 import KeyClock


def clock(fmt: str, segment: int = 1) -> KeyClock:
    return KeyClock(KeySegmentTime(key_segment=segment, format=fmt), "S3 location test")


@pytest.mark.parametrize(("fmt", "segment", "latest"), [
    ("%Y-%m-%dT%H:%M:%S", "2025-03-01T12:00:00", datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)),
    ("%Y-%m-%dT%H:%M", "2025-03-01T12:00", datetime(2025, 3, 1, 12, 0, 59, 999999, tzinfo=UTC)),
    ("%Y-%m-%dT%H", "2025-03-01T12", datetime(2025, 3, 1, 12, 59, 59, 999999, tzinfo=UTC)),
    ("%Y-%m-%d", "2025-03-01", datetime(2025, 3, 1, 23, 59, 59, 999999, tzinfo=UTC)),
    ("%Y%m%d", "20250228", datetime(2025, 2, 28, 23, 59, 59, 999999, tzinfo=UTC)),
    ("%Y-%m", "2024-02", datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC)),
    ("%Y", "2024", datetime(2024, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
    ("%Y-%m-%dT%H:%M:%S%z", "2025-03-01T14:00:00+0200", datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)),
])
def test_a_key_segment_stands_for_the_last_instant_of_its_period(fmt: str, segment: str, latest: datetime) -> None:
    assert clock(fmt).latest(f"tenants/{segment}/file") == latest


def test_a_twelve_hour_clock_without_am_pm_counts_as_the_whole_day() -> None:
    end_of_day = datetime(2025, 3, 1, 23, 59, 59, 999999, tzinfo=UTC)
    assert clock("%Y-%m-%d %I:%M").latest("t/2025-03-01 04:00/f") == end_of_day


@pytest.mark.parametrize("key", ["t/not-a-date/f", "t/2025-02-30/f", "t", "t//f", "t/2025-03-01x/f"])
def test_a_segment_that_does_not_parse_dates_nothing(key: str) -> None:
    assert clock("%Y-%m-%d").latest(key) is None


def test_a_format_without_a_year_is_refused() -> None:
    with pytest.raises(ValueError, match="S3 location test: timestamp format '%m-%d' carries no year"):
        clock("%m-%d")
