"""The stage an open offboarding is at, from its ledger events and its tasks' states (pure)."""

from __future__ import annotations

from collections import Counter

import pendulum
import pytest

from retention.offboarding import status as s

NOW = pendulum.datetime(2026, 11, 23, 12, tz="UTC")
DELETE = {"choice": "delete", "effective_at": "2026-11-20T00:00:00Z"}
RETURN = {"choice": "return", "effective_at": "2026-11-20T00:00:00Z"}
APPROVED = {"offboarding.approved": {}}


@pytest.mark.parametrize(("request_", "events", "tasks", "expected"), [
    (DELETE, {}, {"planned": 9}, s.AWAITING_APPROVAL),
    ({**DELETE, "effective_at": "2026-12-31T00:00:00Z"}, APPROVED, {"planned": 9}, s.AWAITING_EFFECTIVE_DATE),
    (RETURN, APPROVED, {"planned": 9}, s.PREPARING_RETURN),
    (RETURN, {**APPROVED, "return.delivered": {}}, {"planned": 9}, s.AWAITING_RECEIPT),
    (RETURN, {**APPROVED, "return.delivered": {}, "return.received": {}}, {"planned": 9}, s.DELETING),
    (RETURN, {**APPROVED, "return.delivered": {}, "return.window_elapsed": {}}, {"running": 1, "done": 3}, s.DELETING),
    (DELETE, APPROVED, {"done": 2, "verified": 7}, s.VERIFYING),
    (DELETE, APPROVED, {"residue": 1, "verified": 8}, s.RESIDUE),
    (DELETE, APPROVED, {"verified": 8, "held": 1, "skipped": 2}, s.BACKUPS),
    (DELETE, {**APPROVED, "backup.copies_recorded": {}}, {"verified": 9}, s.FINISHING),
])
def test_each_stage_of_the_dag_is_named(request_, events, tasks, expected) -> None:
    assert s.stage(events, request_, Counter(tasks), NOW) == expected


def test_a_return_is_never_past_the_receipt_while_it_waits_for_the_customer() -> None:
    waiting = {**APPROVED, "return.delivered": {}, "backup.copies_recorded": {}}
    assert s.stage(waiting, RETURN, Counter({"verified": 9}), NOW) == s.AWAITING_RECEIPT
