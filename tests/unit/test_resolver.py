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


# --- the shipped bases say only what the seeds say (issue 14, item 7) -------------------------------------

import re  # noqa: E402

SEEDS = REPO.parent / "shared" / "seeds"
# The only sources a non-statutory basis may cite: the Privacy Policy and the DPA (annexes, SCCs, cookie tables).
SEED_CITATION = re.compile(r"^(DPA|PP|SCC)\b")
MARKETING_COOKIES = {"_ga", "_gid", "_fbp", "utm_source", "6suuid", "_an_uid"}


def _words(text: str) -> str:
    """Lower-case ASCII words only: the seeds' curly quotes (and their mojibake), markdown and pipes drop out."""
    return " ".join(re.sub(r"[^a-z0-9]+", " ", re.sub(r"[^\x00-\x7f]+|'", "", text.lower())).split())


@pytest.fixture(scope="module")
def seed_words():
    if not SEEDS.is_dir():
        pytest.skip(f"the seed documents are not at {SEEDS}")
    return " ".join(_words(p.read_text(encoding="utf-8")) for p in sorted(SEEDS.glob("*.txt")))


def _all_rules(ruleset):
    return [*ruleset.rules, *ruleset.processor_rules]


def test_every_quote_in_a_basis_is_the_seeds_own_words(shipped, seed_words):
    ruleset, _ = shipped
    for rule in _all_rules(ruleset):
        for fragment in (rule.basis.quote or "").split("…"):
            if fragment.strip():
                assert _words(fragment) in seed_words, (rule.id, fragment)


def test_no_basis_says_a_seed_sets_a_period_it_does_not_state(shipped):
    ruleset, _ = shipped
    for rule in _all_rules(ruleset):
        # The seeds state no retention period for any class: a period is the law's or the processor's.
        assert rule.basis.kind in ("statute", "processor policy"), rule.id
        if rule.basis.kind == "processor policy":
            for citation in re.split(r";(?![^()]*\))", rule.basis.citation):  # not inside parentheses
                assert SEED_CITATION.match(citation.strip()), (rule.id, citation)
        assert "within 30 days" not in rule.basis.summary, rule.id


@pytest.mark.parametrize("rule_id", ["chat-transcripts-in-service", "call-recordings-in-service",
                                     "chat-transcripts-terminated", "visitor-profiles-european"])
def test_the_periods_the_issue_found_unsupported_are_the_processors_default(shipped, rule_id):
    basis = shipped[0].rule(rule_id).basis
    assert (basis.kind, basis.period_source) == ("processor policy", "processor's default")


def test_termination_rules_quote_upon_termination_and_state_no_days_of_their_own(shipped):
    ruleset, _ = shipped
    for rule in ruleset.rules:
        if "Annex 1 §1(d)" in rule.basis.citation:
            assert "upon termination" in rule.basis.quote and "no number of days" in rule.basis.summary


def test_visitor_rules_say_why_they_keep_the_record_shorter_than_the_seeds_10_year_cookie(shipped):
    ruleset, _ = shipped
    visitor_cookies = ruleset.data_classes.data_classes["visitor_profiles"].cookies
    cookie = next(c for c in visitor_cookies if c.name.startswith("__q_state"))
    assert str(cookie.expiry) == "P10Y"
    for rule in (r for r in ruleset.rules
                 if r.data_class == "visitor_profiles" and r.anchor.value == "last_activity_at"):
        assert rule.retain_for.nominal_seconds < cookie.expiry.nominal_seconds
        assert "10 years" in rule.basis.quote and "10 years" in rule.basis.summary
        assert "does not keep that copy 10 years" in rule.basis.summary, rule.id


def test_the_processors_own_marketing_data_is_not_a_customers_data(shipped):
    ruleset, _ = shipped
    for name, spec in ruleset.data_classes.data_classes.items():
        names = {c.name for c in spec.cookies}
        assert not names & MARKETING_COOKIES and not any(n.startswith("visitor_id") for n in names), name
        assert not spec.is_processor_data
    processor_cookies = {c.name for spec in ruleset.processor_data_classes.values() for c in spec.cookies}
    assert MARKETING_COOKIES <= processor_cookies and "visitor_id<id>" in processor_cookies
    assert {"newsletter_subscribers", "survey_contacts"} <= set(ruleset.processor_data_classes)
    assert all(spec.is_processor_data for spec in ruleset.processor_data_classes.values())
    assert {r.data_class for r in ruleset.processor_rules} == set(ruleset.processor_data_classes)


def test_no_location_of_the_inventory_holds_the_processors_own_data(shipped):
    from retention.rules.inventory import load_inventory

    ruleset, _ = shipped
    systems = load_inventory(REPO / "retention_rules" / "systems.yaml", ruleset)
    assert not {loc.data_class for loc in systems.locations.values()} & set(ruleset.processor_data_classes)


# --- the customer's own instructions, per account and data class (issue 14, item 7) ---------------------

from retention.rules import RulesError  # noqa: E402
from retention.rules.durations import IsoDuration  # noqa: E402


def instructed(**instructions) -> Account:
    return account(instructions=instructions)


def test_the_customers_instruction_sets_the_period_within_the_bounds(rules_dir):
    decision = resolve(load_ruleset(rules_dir.root), instructed(chat_transcripts="P60D"), "chat_transcripts", NOW)
    assert (str(decision.retain_for), decision.period_source) == ("P60D", "customer's instruction")
    assert decision.cutoff == NOW.subtract(days=60)


def test_the_customers_instruction_wins_over_a_contract_override(rules_dir):
    rules_dir.write(overrides="overrides:\n  - {id: ovr-1, account_id: acct_1, data_class: chat_transcripts,"
                              " retain_for: P7D, contract_reference: Order form 1}\n")
    decision = resolve(load_ruleset(rules_dir.root), instructed(chat_transcripts="P14D"), "chat_transcripts", NOW)
    assert (str(decision.retain_for), decision.override_id, decision.period_source) == (
        "P14D", None, "customer's instruction")


def test_without_an_instruction_the_contract_override_then_the_rule_decide(rules_dir):
    rules_dir.write(overrides="overrides:\n  - {id: ovr-1, account_id: acct_1, data_class: chat_transcripts,"
                              " retain_for: P7D, contract_reference: Order form 1}\n")
    ruleset = load_ruleset(rules_dir.root)
    assert resolve(ruleset, account(), "chat_transcripts", NOW).period_source == "contract"
    other = account(id="acct_2")
    # the fixture's rule: contract
    assert (resolve(ruleset, other, "chat_transcripts", NOW).period_source) == "contract"
    rules_dir.write(rules=rules_dir.texts["rules"].replace(
        '{kind: contract, citation: DPA 3, summary: default period, quote: "kept for 30 days"}',
        "{kind: processor policy, citation: DPA 3, summary: default period}"))
    assert resolve(load_ruleset(rules_dir.root), other, "chat_transcripts", NOW).period_source == "processor's default"


def test_an_instruction_does_not_move_a_period_the_rule_does_not_let_move(rules_dir):
    # The termination rule has no override_bounds: the instruction about transcripts in service does not apply.
    gone = terminated().model_copy(update={"instructions": {"chat_transcripts": IsoDuration.parse("P60D")}})
    decision = resolve(load_ruleset(rules_dir.root), gone, "chat_transcripts", NOW)
    assert str(decision.retain_for) == "P30D" and decision.period_source == "contract"


def test_statutory_periods_come_from_law(shipped):
    ruleset, accounts = shipped
    assert resolve(ruleset, accounts["acct_4004"], "billing_records", NOW).period_source == "law"


ACCOUNTS_WITH_INSTRUCTIONS = """\
accounts:
  - id: acct_1
    state: active
    jurisdiction: EEA
    created_at: 2024-01-01
    instructions:
      chat_transcripts: {value}
"""


def registry(tmp_path, value: str):
    path = tmp_path / "accounts.yaml"
    path.write_text(ACCOUNTS_WITH_INSTRUCTIONS.format(value=value))
    return path


def test_instructions_are_read_from_the_account_registry(rules_dir, tmp_path):
    ruleset = load_ruleset(rules_dir.root)
    accounts = load_accounts(registry(tmp_path, "P45D"), ruleset)
    assert str(resolve(ruleset, accounts["acct_1"], "chat_transcripts", NOW).retain_for) == "P45D"


@pytest.mark.parametrize("value, message", [
    ("P1Y", "outside rule 'chats-in-service''s bounds [P1D, P90D]"),
    ("P0D", "longer than zero"),
    ("PT0S", "longer than zero"),
    ("'-P1D'", "not an ISO-8601 duration"),
    ("soon", "not an ISO-8601 duration"),
])
def test_a_bad_instruction_is_refused_naming_file_line_and_field(rules_dir, tmp_path, value, message):
    path = registry(tmp_path, value)
    with pytest.raises(RulesError) as caught:
        load_accounts(path, load_ruleset(rules_dir.root))
    [issue] = caught.value.issues
    assert (issue.file.endswith("accounts.yaml"), issue.line, issue.column, issue.field) == (
        True, 7, 25, "accounts[0].instructions.chat_transcripts")
    assert message in issue.message


def test_an_instruction_for_an_unknown_data_class_is_refused(rules_dir, tmp_path):
    path = tmp_path / "accounts.yaml"
    path.write_text(ACCOUNTS_WITH_INSTRUCTIONS.replace("chat_transcripts: {value}", "chat_transcript: P30D"))
    with pytest.raises(RulesError) as caught:
        load_accounts(path, load_ruleset(rules_dir.root))
    [issue] = caught.value.issues
    assert (issue.line, issue.column, issue.field) == (7, 7, "accounts[0].instructions.chat_transcript")
    assert "unknown data class 'chat_transcript'" in issue.message and "chat_transcripts" in issue.hint


def test_an_instruction_for_a_class_whose_rules_allow_no_change_is_refused(rules_dir, tmp_path):
    rules_dir.write(rules=rules_dir.texts["rules"].replace("    override_bounds: {min: P1D, max: P90D}\n", ""))
    with pytest.raises(RulesError) as caught:
        load_accounts(registry(tmp_path, "P45D"), load_ruleset(rules_dir.root))
    assert "allows an instruction to change its period" in caught.value.issues[0].message


@pytest.mark.parametrize("instructions, message", [
    ({"chat_transcripts": "P1Y"}, "outside rule 'chats-in-service''s bounds"),
    ({"faxes": "P30D"}, "unknown data class 'faxes'"),
])
def test_no_decision_for_an_account_whose_instructions_the_rules_do_not_allow(rules_dir, instructions, message):
    # A registry read without the rules (only the jurisdictions) is still refused when it is resolved.
    with pytest.raises(ResolutionError, match=message):
        resolve(load_ruleset(rules_dir.root), instructed(**instructions), "chat_transcripts", NOW)
