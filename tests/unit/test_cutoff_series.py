"""The cutoff series the forecast uses: at every instant what ``resolve`` gives, never moving earlier over days
(month ends, leap days, an override clamped into its bounds), and checked once as a shared ``Cutoffs``."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pendulum
import pytest

from retention.rules import Account, load_ruleset, resolve
from retention.rules.resolver import cutoff_series
from retention.stores.base import Cutoffs, DueSeries, first_due

REPO = Path(__file__).resolve().parents[2]
START = pendulum.datetime(2027, 12, 29, 18, 30, 0, tz="UTC")  # across month ends and the 2028 leap day
INSTRUCTIONS = {"chat_transcripts": "P1Y", "visitor_activity": "P6M", "contact_records": "P2Y",
                "meeting_bookings": "P1Y"}


@pytest.mark.parametrize("instructions", [{}, INSTRUCTIONS])
@pytest.mark.parametrize("jurisdiction", ["EEA", "UK", "US-CA"])
def test_each_days_cutoff_is_what_resolve_gives_that_day_and_never_earlier_than_the_day_before(jurisdiction,
                                                                                               instructions):
    ruleset = load_ruleset(REPO / "retention_rules")
    account = Account.model_validate({"id": "acct_1", "state": "active", "jurisdiction": jurisdiction,
                                      "created_at": "2020-01-01T00:00:00Z", "instructions": instructions})
    instants = [START.add(days=day) for day in range(100)]
    for data_class in sorted(ruleset.data_classes.data_classes):
        decision = resolve(ruleset, account, data_class, START)

        series = cutoff_series(ruleset, decision, instants)

        assert list(series) == [resolve(ruleset, account, data_class, at).cutoff for at in instants], data_class
        Cutoffs(series)  # refuses a series that moves earlier


def test_a_series_that_moves_earlier_or_is_naive_is_refused():
    with pytest.raises(ValueError, match="must not move earlier"):
        Cutoffs((datetime(2026, 1, 2, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)))
    with pytest.raises(ValueError, match="timezone-aware"):
        Cutoffs((datetime(2026, 1, 1),))
    with pytest.raises(ValueError, match="anchor and cutoffs together"):
        DueSeries("acct_1", "created_at", None)


def test_a_record_is_first_due_at_the_first_cutoff_at_or_after_its_time():
    cutoffs = Cutoffs(tuple(datetime(2026, 1, day, tzinfo=UTC) for day in (1, 2, 2, 3)))

    assert first_due(cutoffs, datetime(2025, 12, 1, tzinfo=UTC)) == 0
    assert first_due(cutoffs, datetime(2026, 1, 2, tzinfo=UTC)) == 1  # exactly at a cutoff: due at it
    assert first_due(cutoffs, datetime(2026, 1, 2, 0, 0, 0, 1, tzinfo=UTC)) == 3  # a microsecond after: the next
    assert first_due(cutoffs, datetime(2026, 1, 3, 0, 0, 0, 1, tzinfo=UTC)) is None
