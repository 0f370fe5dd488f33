"""Decision -> what the sweep does in a location, or why it keeps the data."""

from __future__ import annotations

import pendulum

from retention.engine.steps import Skip, Step, step_for
from retention.rules import Account, LegalHold, load_ruleset, resolve
from retention.stores import Selector

NOW = pendulum.datetime(2026, 11, 23, tz="UTC")


def account(**fields) -> Account:
    return Account.model_validate({"id": "acct_1", "state": "active", "jurisdiction": "EEA",
                                   "created_at": "2024-01-01", **fields})


def terminated(choice: str, at: str) -> Account:
    return account(state="terminated", terminated_at=at, election={"choice": choice, "elected_at": at})


def step(rules_dir, acct: Account, holds=()):
    return step_for(resolve(load_ruleset(rules_dir.root), acct, "chat_transcripts", NOW, holds))


def test_record_anchored_rule_selects_records_up_to_the_cutoff(rules_dir):
    assert step(rules_dir, account()) == Step("delete", Selector("acct_1", "created_at", NOW.subtract(days=30)))


def test_due_account_event_selects_all_of_the_accounts_data(rules_dir):
    assert step(rules_dir, terminated("delete", "2026-09-01T00:00:00Z")) == Step("delete", Selector("acct_1"))


def test_account_event_not_yet_due_is_kept_with_its_date(rules_dir):
    kept = step(rules_dir, terminated("delete", "2026-11-10T00:00:00Z"))
    assert isinstance(kept, Skip) and "not due until 2026-12-10T00:00:00+00:00" in kept.reason


def test_customer_who_elected_return_keeps_data_for_the_offboarding(rules_dir):
    kept = step(rules_dir, terminated("return", "2026-09-01T00:00:00Z"))
    assert isinstance(kept, Skip) and "elected return" in kept.reason


def test_legal_hold_is_kept_and_named(rules_dir):
    hold = LegalHold("hold-9", "acct_1", None, placed_at=NOW.subtract(days=1))
    assert step(rules_dir, account(), [hold]) == Skip("legal hold hold-9 in force")


def test_anonymize_rule_becomes_an_anonymize_step(rules_dir):
    rules_dir.write(rules=rules_dir.texts["rules"].replace("    action: delete\n", "    action: anonymize\n"))
    assert step(rules_dir, account()).action == "anonymize"


def test_statutory_retention_deletes_only_what_is_past_its_period(rules_dir):
    rules_dir.write(rules=rules_dir.texts["rules"].replace(
        "retain_for: P30D\n    anchor: terminated_at\n    action: return_then_delete\n    basis: {kind: contract",
        "retain_for: P10Y\n    anchor: created_at\n    action: retain_isolated\n    basis: {kind: statute"))
    assert step(rules_dir, terminated("delete", "2026-09-01T00:00:00Z")) == \
        Step("delete", Selector("acct_1", "created_at", NOW.subtract(years=10)))
