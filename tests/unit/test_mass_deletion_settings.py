"""The mass-deletion threshold: read from the environment, refused whole when it is not a share or a count,
and applied only to locations large enough for a share to mean a mass deletion."""

from __future__ import annotations

import pytest

from retention.engine.planner import MassDeletion, MassDeletionPolicy, mass_deletions, refuse_unacknowledged
from retention.settings import Settings


def settings(monkeypatch, **env: str) -> Settings:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings.from_env()


def test_defaults_and_overrides(monkeypatch) -> None:
    monkeypatch.delenv("RETENTION_MASS_DELETION_SHARE", raising=False)
    monkeypatch.delenv("RETENTION_MASS_DELETION_MIN_RECORDS", raising=False)
    assert (Settings.from_env().mass_deletion_share, Settings.from_env().mass_deletion_min_records) == (0.5, 1000)
    given = settings(monkeypatch, RETENTION_MASS_DELETION_SHARE="0.2", RETENTION_MASS_DELETION_MIN_RECORDS="50")
    assert (given.mass_deletion_share, given.mass_deletion_min_records) == (0.2, 50)


@pytest.mark.parametrize("value", ["0", "-0.1", "1.5", "half", "nan", "inf"])
def test_a_share_that_is_not_a_fraction_is_refused_naming_the_setting(monkeypatch, value) -> None:
    with pytest.raises(ValueError, match="RETENTION_MASS_DELETION_SHARE"):
        settings(monkeypatch, RETENTION_MASS_DELETION_SHARE=value)


@pytest.mark.parametrize("value", ["-1", "ten", "1.5"])
def test_a_minimum_that_is_not_a_count_is_refused_naming_the_setting(monkeypatch, value) -> None:
    with pytest.raises(ValueError, match="RETENTION_MASS_DELETION_MIN_RECORDS"):
        settings(monkeypatch, RETENTION_MASS_DELETION_MIN_RECORDS=value)


def row(location: str, account: str, total: int, due: int, skip: str | None = None) -> dict:
    return {"account_id": account, "data_class": "chat_transcripts", "location": location, "action": "delete",
            "rule_id": "r", "anchor": "created_at", "cutoff": None, "total_count": total,
            "estimated_count": due, "skip_reason": skip}


def test_more_than_the_share_of_a_large_enough_location_is_flagged_and_its_tasks_kept() -> None:
    policy = MassDeletionPolicy(share=0.5, min_records=100)
    rows = [row("big", "a", 100, 60), row("big", "b", 100, 50, skip="legal hold h-1 in force"),
            row("half", "a", 200, 100), row("tiny", "a", 10, 10)]
    # big: 60 of 200 records is not more than half; half: exactly half is not more; tiny: under the minimum
    assert mass_deletions(rows, policy, frozenset()) == []
    rows[0]["estimated_count"] = 101
    (found,) = mass_deletions(rows, policy, frozenset())
    assert found == MassDeletion("big", 101, 200, False) and found.percent == "50.5"
    kept = refuse_unacknowledged(rows, [found], policy)
    assert kept[0]["action"] == "keep" and kept[0]["estimated_count"] == 0
    assert kept[0]["skip_reason"] == ("mass deletion refused: big: 101 of its 200 records (50.5%) due at once, more "
                                      "than the 50% a run may make due without acknowledging the location")
    assert kept[1]["skip_reason"] == "legal hold h-1 in force" and kept[2:] == rows[2:]
    (acknowledged,) = mass_deletions(rows, policy, frozenset({"big"}))
    assert acknowledged.acknowledged and refuse_unacknowledged(rows, [acknowledged], policy) == rows
