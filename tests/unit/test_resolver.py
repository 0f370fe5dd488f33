"""The resolver on worked examples: cutoffs, holds, elections, overrides and their bounds."""

from __future__ import annotations

from pathlib import Path

import pendulum
import pytest

from retention.rules import (
    Account,
    Action,
    LegalHold,
    ResolutionError,
    load_accounts,
    load_ruleset,
    resolve,
)

REPO = Path(__file__).resolve().parents[2]
NOW = pendulum.datetime(2026, 11, 23, 12, 0, 0, tz="UTC")


def account(**fields) -> Account:
    base = {"id": "acct_1", "state": "active", "jurisdiction": "EEA", "created_at": "2024-01-01"}
    return Account.model_validate({**base, **fields})


def terminated(choice: str = "delete", at: str = "2026-10-01T00:00:00Z") -> Account:
    return account(state="terminated", terminated_at=at, election={"choice": choice, "elected_at": at})


def test_record_one_second_younger_than_cutoff_survives(rules_dir):
    decision = resolve(load_ruleset(rules_dir.root), account(), "chat_transcripts", NOW)
    assert decision.cutoff == pendulum.datetime(2026, 10, 24, 12, 0, 0, tz="UTC")  # NOW - P30D
    assert decision.is_due(decision.cutoff)
    assert not decision.is_due(decision.cutoff.add(seconds=1))


def test_a_legal_hold_on_the_account_blocks_every_record(rules_dir):
    hold = LegalHold("hold-1", "acct_1", None, placed_at=NOW.subtract(days=1))
    decision = resolve(load_ruleset(rules_dir.root), account(), "chat_transcripts", NOW, [hold])
    assert decision.blocked_by == ("hold-1",)
    assert not decision.is_due(pendulum.datetime(2000, 1, 1, tz="UTC"))


@pytest.mark.parametrize("hold", [
    LegalHold("other-account", "acct_2", None, placed_at=NOW.subtract(days=1)),
    LegalHold("other-class", None, "call_recordings", placed_at=NOW.subtract(days=1)),
    LegalHold("released", "acct_1", None, placed_at=NOW.subtract(days=9), released_at=NOW.subtract(days=1)),
    LegalHold("future", "acct_1", None, placed_at=NOW.add(days=1)),
])
def test_holds_that_do_not_cover_the_data_at_that_time_do_not_block(rules_dir, hold):
    decision = resolve(load_ruleset(rules_dir.root), account(), "chat_transcripts", NOW, [hold])
    assert decision.blocked_by == ()


def test_a_hold_on_the_data_class_blocks_every_account(rules_dir):
    hold = LegalHold("hold-dc", None, "chat_transcripts", placed_at=NOW.subtract(days=1))
    assert resolve(load_ruleset(rules_dir.root), account(), "chat_transcripts", NOW, [hold]).blocked_by == ("hold-dc",)


def test_termination_with_delete_election_resolves_to_delete_after_grace(rules_dir):
    decision = resolve(load_ruleset(rules_dir.root), terminated("delete"), "chat_transcripts", NOW)
    assert decision.action is Action.DELETE
    assert decision.due_at == pendulum.datetime(2026, 10, 31, tz="UTC")
    assert decision.is_due(decision.anchor_time)


def test_termination_with_return_election_keeps_return_then_delete(rules_dir):
    decision = resolve(load_ruleset(rules_dir.root), terminated("return"), "chat_transcripts", NOW)
    assert decision.action is Action.RETURN_THEN_DELETE


def test_grace_period_not_over_means_nothing_is_due(rules_dir):
    decision = resolve(load_ruleset(rules_dir.root), terminated(at="2026-11-20T00:00:00Z"), "chat_transcripts", NOW)
    assert not decision.is_due(decision.anchor_time)


def test_account_event_that_has_not_happened_is_never_due(rules_dir):
    rules_dir.write(rules=rules_dir.texts["rules"].replace("anchor: created_at", "anchor: contract_end"))
    decision = resolve(load_ruleset(rules_dir.root), account(), "chat_transcripts", NOW)
    assert decision.anchor_time is None and not decision.is_due(decision.anchor_time)


def test_contract_override_shortens_the_period(rules_dir):
    rules_dir.write(overrides="overrides:\n  - {id: ovr-1, account_id: acct_1, data_class: chat_transcripts,"
                              " retain_for: P7D, contract_reference: Order form 1}\n")
    decision = resolve(load_ruleset(rules_dir.root), account(), "chat_transcripts", NOW)
    assert (decision.override_id, str(decision.retain_for)) == ("ovr-1", "P7D")
    assert decision.cutoff == NOW.subtract(days=7)


def test_override_of_another_account_is_ignored(rules_dir):
    rules_dir.write(overrides="overrides:\n  - {id: ovr-2, account_id: acct_2, data_class: chat_transcripts,"
                              " retain_for: P7D, contract_reference: Order form 2}\n")
    assert resolve(load_ruleset(rules_dir.root), account(), "chat_transcripts", NOW).override_id is None


def test_month_override_is_clamped_to_the_minimum_bound(rules_dir):
    # P1M passes the load-time check (30 nominal days <= P30D) but is 28 days in February.
    rules_dir.write(rules=rules_dir.texts["rules"].replace("{min: P1D, max: P90D}", "{min: P30D, max: P90D}"),
                    overrides="overrides:\n  - {id: ovr-3, account_id: acct_1, data_class: chat_transcripts,"
                              " retain_for: P1M, contract_reference: Order form 3}\n")
    march_1 = pendulum.datetime(2026, 3, 1, tz="UTC")
    decision = resolve(load_ruleset(rules_dir.root), account(), "chat_transcripts", march_1)
    assert decision.cutoff == march_1.subtract(days=30)  # not Feb 1, which would delete 2 days early


def test_unknown_data_class_is_an_error_not_a_default(rules_dir):
    with pytest.raises(ResolutionError, match="unknown data class"):
        resolve(load_ruleset(rules_dir.root), account(), "faxes", NOW)


def test_naive_clock_is_refused(rules_dir):
    with pytest.raises(ResolutionError, match="timezone-aware"):
        resolve(load_ruleset(rules_dir.root), account(), "chat_transcripts", pendulum.naive(2026, 1, 1))


@pytest.mark.parametrize("fields, message", [
    ({"state": "terminated"}, "needs terminated_at"),
    ({"terminated_at": "2026-01-01T00:00:00Z"}, "state is 'active'"),
    ({"created_at": "2026-01-01T00:00:00"}, "has no timezone"),
])
def test_inconsistent_accounts_are_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        account(**fields)


# --- the shipped rules, on the demo accounts ---------------------------------------------------------

@pytest.fixture(scope="module")
def shipped():
    ruleset = load_ruleset(REPO / "retention_rules")
    accounts = load_accounts(REPO / "demo" / "accounts.yaml", set(ruleset.jurisdictions.jurisdictions))
    return ruleset, accounts


def test_every_demo_account_gets_a_decision_for_every_data_class(shipped):
    ruleset, accounts = shipped
    for acct in accounts.values():
        for data_class in ruleset.data_classes.data_classes:
            assert resolve(ruleset, acct, data_class, NOW).rule_id


def test_billing_records_of_a_terminated_eea_account_are_retained_isolated_for_ten_years(shipped):
    ruleset, accounts = shipped
    decision = resolve(ruleset, accounts["acct_4004"], "billing_records", NOW)
    assert decision.action is Action.RETAIN_ISOLATED and decision.isolate
    assert decision.basis.kind == "statute" and "§147 AO" in decision.basis.citation
    assert decision.cutoff == NOW.subtract(years=10)


def test_european_visitor_profiles_expire_after_13_months_of_inactivity(shipped):
    ruleset, accounts = shipped
    eea = resolve(ruleset, accounts["acct_1001"], "visitor_profiles", NOW)
    us = resolve(ruleset, accounts["acct_2002"], "visitor_profiles", NOW)
    assert (eea.rule_id, eea.cutoff) == ("visitor-profiles-european", NOW.subtract(months=13))
    assert (us.rule_id, us.cutoff) == ("visitor-profiles-elsewhere", NOW.subtract(years=2))


def test_demo_override_applies_to_its_account_only(shipped):
    ruleset, accounts = shipped
    assert resolve(ruleset, accounts["acct_2002"], "chat_transcripts", NOW).override_id == "acct-2002-short-transcripts"
    assert resolve(ruleset, accounts["acct_1001"], "chat_transcripts", NOW).override_id is None


def test_every_personal_data_class_is_deleted_at_termination_unless_a_statute_keeps_it(shipped):
    ruleset, _ = shipped
    for data_class, spec in ruleset.data_classes.data_classes.items():
        if not spec.personal_data:
            continue
        for jurisdiction in ruleset.jurisdictions.jurisdictions:
            gone = terminated().model_copy(update={"jurisdiction": jurisdiction})
            decision = resolve(ruleset, gone, data_class, NOW)
            if decision.action is Action.RETAIN_ISOLATED:
                assert decision.basis.kind == "statute", data_class
            else:
                # DPA 7(b) / Annex 1 §1(d): nothing personal outlives termination by more than 90 days.
                latest = decision.due_at or decision.retain_for.after(gone.terminated_at)
                assert latest <= gone.terminated_at.add(days=90), (data_class, jurisdiction)
