"""Broken rules files are refused whole, and every message names file:line:column and the field."""

from __future__ import annotations

import pytest

from retention.rules import RulesError, load_ruleset
from tests.rules_fixtures import DATA_CLASSES, RULES


def problems(rules_dir) -> list:
    with pytest.raises(RulesError) as caught:
        load_ruleset(rules_dir.root)
    return caught.value.issues


def only_problem(rules_dir):
    found = problems(rules_dir)
    assert len(found) == 1, "\n".join(map(str, found))
    return found[0]


def where(issue) -> str:
    return f"{issue.file}:{issue.line}:{issue.column}: {issue.field}"


def test_the_minimal_rule_set_is_valid(rules_dir):
    ruleset = load_ruleset(rules_dir.root)
    assert [r.id for r in ruleset.rules] == ["chats-in-service", "chats-terminated"]


def test_unknown_key_names_its_line_and_suggests_the_right_one(rules_dir):
    rules_dir.write(rules=RULES.replace("    retain_for: P30D\n    anchor: created_at",
                                        "    retain_four: P30D\n    anchor: created_at"))
    issue = problem_at(rules_dir, "rules[0].retain_four")
    line = rules_dir.line_of("rules", "retain_four")
    assert where(issue) == f"{rules_dir.path('rules')}:{line}:5: rules[0].retain_four"
    assert issue.message == "unknown key 'retain_four'"
    assert "did you mean 'retain_for'?" in issue.hint


def problem_at(rules_dir, field: str):
    """One mistake can cause several problems (a typo also leaves a field missing); pick one by field."""
    found = problems(rules_dir)
    return next((i for i in found if i.field == field), None) or pytest.fail("\n".join(map(str, found)))


def test_bad_duration_points_at_the_value(rules_dir):
    rules_dir.write(rules=RULES.replace("retain_for: P30D\n    anchor: created_at",
                                        "retain_for: 30 days\n    anchor: created_at"))
    issue = only_problem(rules_dir)
    assert where(issue) == f"{rules_dir.path('rules')}:{rules_dir.line_of('rules', '30 days')}:17: rules[0].retain_for"
    assert "not an ISO-8601 duration" in issue.message


@pytest.mark.parametrize("text", ["P", "PT", "P1.5Y", "-P1D", "P1DT", "1Y"])
def test_malformed_durations_are_refused(rules_dir, text):
    rules_dir.write(rules=RULES.replace("retain_for: P30D\n    anchor: created_at",
                                        f"retain_for: '{text}'\n    anchor: created_at"))
    assert only_problem(rules_dir).field == "rules[0].retain_for"


def test_unknown_data_class_suggests_the_closest(rules_dir):
    rules_dir.write(rules=RULES.replace("data_class: chat_transcripts", "data_class: chat_transcript", 1))
    issue = problem_at(rules_dir, "rules[0].data_class")
    assert where(issue) == f"{rules_dir.path('rules')}:3:17: rules[0].data_class"
    assert issue.message == "unknown data class 'chat_transcript'"
    assert "did you mean 'chat_transcripts'?" in issue.hint


def test_overlapping_rules_with_different_outcomes_are_refused(rules_dir):
    overlap = """\
  - id: chats-trial-short
    data_class: chat_transcripts
    account_states: [trial]
    retain_for: P7D
    anchor: created_at
    action: delete
    basis: {kind: processor policy, citation: none, summary: shorter for trials}
"""
    rules_dir.write(rules=RULES + overlap)
    issue = only_problem(rules_dir)
    assert where(issue) == f"{rules_dir.path('rules')}:{rules_dir.line_of('rules', 'chats-trial-short')}:5: rules[2]"
    assert "overlaps rule 'chats-in-service' (line 2)" in issue.message
    assert "different outcome" in issue.message


def test_a_jurisdiction_specific_rule_refines_a_general_one_without_overlap(rules_dir):
    refined = """\
  - id: chats-in-service-eea
    data_class: chat_transcripts
    account_states: [trial, active, suspended]
    jurisdictions: [EEA]
    retain_for: P14D
    anchor: created_at
    action: delete
    basis: {kind: policy, citation: none, summary: shorter in the EEA}
"""
    ruleset = load_ruleset(rules_dir.write(rules=RULES + refined).root)
    assert len(ruleset.rules) == 3


def test_a_gap_names_the_data_class_and_the_undecided_cases(rules_dir):
    rules_dir.write(rules=RULES.split("  - id: chats-terminated")[0])
    issue = only_problem(rules_dir)
    line = rules_dir.line_of("data_classes", "chat_transcripts:")
    assert where(issue) == f"{rules_dir.path('data_classes')}:{line}:3: data_classes.chat_transcripts"
    assert "terminated/EEA, terminated/OTHER" in issue.message
    assert "add a rule" in issue.hint


def test_duplicate_yaml_key_is_an_error_not_a_silent_overwrite(rules_dir):
    rules_dir.write(rules=RULES.replace("    anchor: created_at\n",
                                        "    anchor: created_at\n    anchor: last_activity_at\n", 1))
    issue = only_problem(rules_dir)
    line = rules_dir.line_of("rules", "last_activity_at")
    assert where(issue) == f"{rules_dir.path('rules')}:{line}:5: rules[0].anchor"
    assert issue.message.startswith("duplicate key 'anchor'")


def test_yaml_syntax_error_names_line_and_column(rules_dir):
    rules_dir.write(rules=RULES.replace("account_states: [terminated]", "account_states: [terminated"))
    issue = only_problem(rules_dir)
    assert issue.file == rules_dir.path("rules") and issue.field == "(syntax)"
    assert issue.line >= rules_dir.line_of("rules", "[terminated")


def test_yes_is_not_a_boolean(rules_dir):
    rules_dir.write(data_classes=DATA_CLASSES.replace("personal_data: true", "personal_data: yes"))
    issue = only_problem(rules_dir)
    assert where(issue) == f"{rules_dir.path('data_classes')}:9:20: data_classes.chat_transcripts.personal_data"


def test_missing_field_is_named_with_a_hint(rules_dir):
    rules_dir.write(rules=RULES.replace("    anchor: terminated_at\n", ""))
    issue = only_problem(rules_dir)
    line = rules_dir.line_of("rules", "id: chats-terminated")
    assert where(issue) == f"{rules_dir.path('rules')}:{line}:5: rules[1].anchor"
    assert issue.message == "required field 'anchor' is missing"


def test_anchor_the_data_class_does_not_record_is_refused(rules_dir):
    rules_dir.write(rules=RULES.replace("anchor: created_at", "anchor: last_activity_at"))
    issue = only_problem(rules_dir)
    assert issue.field == "rules[0].anchor"
    assert "have no 'last_activity_at'" in issue.message


def test_retain_isolated_without_a_statute_is_refused(rules_dir):
    rules_dir.write(rules=RULES.replace("action: return_then_delete", "action: retain_isolated"))
    issue = only_problem(rules_dir)
    assert issue.field == "rules[1].basis.kind"
    assert "statutory basis" in issue.message


def test_return_then_delete_for_active_accounts_is_refused(rules_dir):
    rules_dir.write(rules=RULES.replace("    action: delete\n", "    action: return_then_delete\n"))
    assert only_problem(rules_dir).field == "rules[0].action"


def test_override_outside_the_rule_bounds_is_refused(rules_dir):
    rules_dir.write(overrides="""\
overrides:
  - id: acct-1-long
    account_id: acct_1
    data_class: chat_transcripts
    retain_for: P1Y
    contract_reference: Order form 7
""")
    issue = only_problem(rules_dir)
    assert where(issue) == f"{rules_dir.path('overrides')}:5:17: overrides[0].retain_for"
    assert "outside rule 'chats-in-service'" in issue.message


@pytest.mark.parametrize("account_id", ["acct:1", ".acct_1"])
def test_an_override_for_what_cannot_be_an_account_id_is_refused(rules_dir, account_id):
    """The account-id rule of retention.ids, as the registry, holds and stores read ids: an override naming an id
    no account can have would never apply, and is refused where it is written."""
    rules_dir.write(overrides=f"""\
overrides:
  - id: acct-1-short
    account_id: "{account_id}"
    data_class: chat_transcripts
    retain_for: P1D
    contract_reference: Order form 7
""")
    assert where(only_problem(rules_dir)) == f"{rules_dir.path('overrides')}:3:17: overrides[0].account_id"


def test_every_problem_is_reported_not_just_the_first(rules_dir):
    rules_dir.write(rules=RULES.replace("retain_for: P30D\n    anchor: created_at",
                                        "retain_for: soon\n    anchor: created_at")
                    .replace("action: return_then_delete", "action: shred"))
    assert [i.field for i in problems(rules_dir)] == ["rules[0].retain_for", "rules[1].action"]


def test_a_missing_file_is_named(rules_dir):
    (rules_dir.root / "overrides.yaml").unlink()
    issue = only_problem(rules_dir)
    assert issue.file == rules_dir.path("overrides") and issue.message == "file not found"


# --- a period is never zero or negative (issue 14, item 8) ------------------------------------------

ZERO_SPELLINGS = ["P0D", "PT0S", "P0Y", "P0M", "P0W", "P0Y0M0D", "PT0H0M0S", "P0DT0H"]


@pytest.mark.parametrize("text", ZERO_SPELLINGS)
@pytest.mark.parametrize("index, anchor", [(0, "created_at"), (1, "terminated_at")])  # with and without bounds
def test_a_zero_retention_period_is_refused_naming_file_line_and_field(rules_dir, text, index, anchor):
    rules_dir.write(rules=RULES.replace(f"retain_for: P30D\n    anchor: {anchor}",
                                        f"retain_for: {text}\n    anchor: {anchor}"))
    issue = only_problem(rules_dir)
    line = rules_dir.line_of("rules", f"retain_for: {text}")
    assert where(issue) == f"{rules_dir.path('rules')}:{line}:17: rules[{index}].retain_for"
    assert "longer than zero" in issue.message


@pytest.mark.parametrize("text", ["-P1D", "P-1D", "-PT1S", "P1D-"])
def test_a_negative_retention_period_is_refused(rules_dir, text):
    rules_dir.write(rules=RULES.replace("retain_for: P30D\n    anchor: created_at",
                                        f"retain_for: '{text}'\n    anchor: created_at"))
    assert only_problem(rules_dir).field == "rules[0].retain_for"


@pytest.mark.parametrize("bound", ["min", "max"])
def test_a_zero_override_bound_is_refused(rules_dir, bound):
    bounds = {"min": "{min: P0D, max: P90D}", "max": "{min: P1D, max: PT0S}"}[bound]
    rules_dir.write(rules=RULES.replace("{min: P1D, max: P90D}", bounds))
    found = problems(rules_dir)
    issue = next((i for i in found if i.field == f"rules[0].override_bounds.{bound}"), None)
    assert issue is not None, "\n".join(map(str, found))
    assert issue.line == rules_dir.line_of("rules", "override_bounds") and "longer than zero" in issue.message


def test_a_zero_contract_override_is_refused(rules_dir):
    rules_dir.write(overrides="""\
overrides:
  - id: acct-1-zero
    account_id: acct_1
    data_class: chat_transcripts
    retain_for: P0M
    contract_reference: Order form 7
""")
    issue = only_problem(rules_dir)
    assert where(issue) == f"{rules_dir.path('overrides')}:5:17: overrides[0].retain_for"
    assert "longer than zero" in issue.message


def test_a_cookie_may_expire_after_zero_days_as_the_cookie_tables_say(rules_dir):
    # The seed's cookie table lists _gid with "0 days": a cookie's expiry is a fact, not a retention period.
    rules_dir.write(data_classes=DATA_CLASSES.replace(
        "    seed_reference: PP 2\n",
        "    cookies:\n      - {name: _gid, host: example.com, party: first, expiry: P0D, purpose: per-page value}\n"
        "    seed_reference: PP 2\n"))
    load_ruleset(rules_dir.root)


# --- bases say where the period comes from (issue 14, item 7) --------------------------------------------

def test_a_period_no_seed_states_is_marked_as_the_processors_policy(rules_dir):
    ruleset = load_ruleset(rules_dir.write(rules=RULES.replace(
        "{kind: contract, citation: DPA 3, summary: default period, quote: \"kept for 30 days\"}",
        "{kind: processor policy, citation: DPA 3, summary: no seed states the period}")).root)
    basis = ruleset.rules[0].basis
    assert (basis.kind, basis.period_source) == ("processor policy", "processor's default")


def test_an_unknown_basis_kind_is_refused(rules_dir):
    rules_dir.write(rules=RULES.replace("{kind: contract, citation: DPA 3,", "{kind: whim, citation: DPA 3,"))
    issue = only_problem(rules_dir)
    line = rules_dir.line_of("rules", "kind: whim")
    assert where(issue) == f"{rules_dir.path('rules')}:{line}:19: rules[0].basis.kind"
    assert "processor policy" in issue.message


def test_a_contract_basis_must_quote_the_contract_words_that_set_the_period(rules_dir):
    # "contract" claims the contract states the period: without the contract's words it is refused.
    rules_dir.write(rules=RULES.replace('quote: "kept for 30 days"', "quote: ''"))
    assert only_problem(rules_dir).field == "rules[0].basis.quote"
    rules_dir.write(rules=RULES.replace(', quote: "kept for 30 days"', ""))
    issue = only_problem(rules_dir)
    line = rules_dir.line_of("rules", "citation: DPA 3")
    assert where(issue) == f"{rules_dir.path('rules')}:{line}:12: rules[0].basis"
    assert "quote" in issue.message and "processor policy" in issue.hint


# --- the processor's own marketing data is a set of its own (issue 14, item 7) ------------------------

PROCESSOR_DATA = """\
processor_data:
  website_analytics:
    owner: processor
    description: Analytics identifiers of the processor's own website
    category: customer_data
    personal_data: true
    ccpa_category: contact_data
    sources: [marketing_site]
    record_timestamps: [created_at]
    cookies:
      - {name: _ga, host: example.com, party: first, expiry: P2Y, purpose: client identifier}
    seed_reference: cookie table
"""

PROCESSOR_RULES = """\
processor_data_rules:
  - id: website-analytics
    data_class: website_analytics
    retain_for: P2Y
    anchor: created_at
    action: delete
    basis: {kind: processor policy, citation: cookie table, summary: the cookie's expiry}
"""


def with_processor_data(rules_dir, data_classes: str = PROCESSOR_DATA, rules: str = PROCESSOR_RULES):
    return rules_dir.write(data_classes=DATA_CLASSES + data_classes, rules=RULES + rules)


def test_processor_data_is_kept_apart_from_the_customer_accounts_data(rules_dir):
    ruleset = load_ruleset(with_processor_data(rules_dir).root)
    assert list(ruleset.data_classes.data_classes) == ["chat_transcripts"]  # what offboarding and sweeps iterate
    assert list(ruleset.processor_data_classes) == ["website_analytics"]
    assert ruleset.processor_data_classes["website_analytics"].is_processor_data
    assert not ruleset.data_classes.data_classes["chat_transcripts"].is_processor_data
    assert [r.id for r in ruleset.rules] == ["chats-in-service", "chats-terminated"]
    assert [r.id for r in ruleset.processor_rules] == ["website-analytics"]


def test_processor_data_filed_among_the_accounts_data_is_refused(rules_dir):
    rules_dir.write(data_classes=DATA_CLASSES.replace("  chat_transcripts:\n",
                                                      "  chat_transcripts:\n    owner: processor\n"))
    issue = only_problem(rules_dir)
    line = rules_dir.line_of("data_classes", "owner: processor")
    assert where(issue) == f"{rules_dir.path('data_classes')}:{line}:12: data_classes.chat_transcripts.owner"
    assert "processor_data" in issue.hint


def test_processor_data_must_say_whose_it_is(rules_dir):
    with_processor_data(rules_dir, PROCESSOR_DATA.replace("    owner: processor\n", ""))
    issue = problem_at(rules_dir, "processor_data.website_analytics.owner")
    assert "owner: processor" in issue.hint


def test_an_account_rule_for_processor_data_is_refused(rules_dir):
    account_rule = """\
  - id: analytics-in-service
    data_class: website_analytics
    account_states: [trial, active, suspended, terminated]
    retain_for: P2Y
    anchor: created_at
    action: delete
    basis: {kind: processor policy, citation: cookie table, summary: expiry}
"""
    rules_dir.write(data_classes=DATA_CLASSES + PROCESSOR_DATA, rules=RULES + account_rule + PROCESSOR_RULES)
    issue = only_problem(rules_dir)
    line = rules_dir.line_of("rules", "data_class: website_analytics")
    assert where(issue) == f"{rules_dir.path('rules')}:{line}:17: rules[2].data_class"
    assert "the processor's own data" in issue.message and "processor_data_rules" in issue.hint


def test_the_old_kind_policy_reads_as_processor_policy(rules_dir):
    rules_dir.write(rules=RULES.replace(
        "{kind: contract, citation: DPA 3, summary: default period, quote: \"kept for 30 days\"}",
        "{kind: policy, citation: DPA 3, summary: default period}"))
    assert load_ruleset(rules_dir.root).rules[0].basis.kind == "processor policy"


def test_processor_data_without_a_rule_is_a_gap(rules_dir):
    with_processor_data(rules_dir, rules="")
    issue = only_problem(rules_dir)
    line = rules_dir.line_of("data_classes", "website_analytics:")
    assert where(issue) == f"{rules_dir.path('data_classes')}:{line}:3: processor_data.website_analytics"
    assert "no rule" in issue.message


def test_a_processor_rule_for_an_accounts_data_class_is_refused(rules_dir):
    with_processor_data(rules_dir, rules=PROCESSOR_RULES + PROCESSOR_RULES.split("processor_data_rules:\n")[1]
                        .replace("id: website-analytics", "id: chats-too")
                        .replace("website_analytics", "chat_transcripts"))
    issue = problem_at(rules_dir, "processor_data_rules[1].data_class")
    assert "a customer account's data class" in issue.message


def test_a_processor_rule_keeps_no_return_or_isolation(rules_dir):
    with_processor_data(rules_dir, rules=PROCESSOR_RULES.replace("action: delete", "action: return_then_delete"))
    assert only_problem(rules_dir).field == "processor_data_rules[0].action"


def test_a_zero_period_for_processor_data_is_refused(rules_dir):
    with_processor_data(rules_dir, rules=PROCESSOR_RULES.replace("retain_for: P2Y", "retain_for: P0Y"))
    issue = only_problem(rules_dir)
    assert issue.field == "processor_data_rules[0].retain_for" and "longer than zero" in issue.message
