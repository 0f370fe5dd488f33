"""Each row of an application's account registry is checked on its own: a bad row is refused with a reason code
(never its text) and the others stand; registry.yaml is validated like the rule files."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from retention.registry import Registry, load_registry, summary_text
from retention.registry.base import collect
from retention.registry.config import load_config
from retention.rules import RulesError, load_ruleset
from retention.rules.accounts import REASONS, RowProblem, account_from_row
from retention.settings import Settings

REPO = Path(__file__).resolve().parents[2]
RULESET = load_ruleset(REPO / "retention_rules")
GOOD = {"id": "acct_1", "state": "active", "jurisdiction": "EEA",
        "created_at": dt.datetime(2024, 1, 1, tzinfo=dt.UTC)}
TERMINATED = {**GOOD, "state": "terminated", "terminated_at": "2026-10-01T00:00:00Z", "election": "delete",
              "elected_at": "2026-09-01T00:00:00+02:00"}


def test_a_good_row_becomes_the_account_as_the_file_would_give_it() -> None:
    account = account_from_row({**TERMINATED, "instructions": '{"chat_transcripts": "P30D"}', "extra": "ignored"},
                               RULESET)
    assert not isinstance(account, RowProblem)
    assert account.election is not None and account.election.elected_at.isoformat() == "2026-08-31T22:00:00+00:00"
    assert str(account.instructions["chat_transcripts"]) == "P30D"


BAD_ROWS = [
    ({"id": "not an id"}, "bad_id", "id"),
    ({"id": 4711}, "bad_id", "id"),
    ({"state": "closed"}, "unknown_state", "state"),
    ({"jurisdiction": "MARS"}, "unknown_jurisdiction", "jurisdiction"),
    ({"created_at": dt.datetime(2024, 1, 1)}, "naive_timestamp", "created_at"),  # timestamp without time zone
    ({"created_at": "2024-01-01T00:00:00"}, "naive_timestamp", "created_at"),  # a text date-time
    ({"created_at": "last tuesday"}, "bad_timestamp", "created_at"),
    ({"created_at": None}, "missing_field", "created_at"),
    ({**TERMINATED, "election": None, "elected_at": None}, "missing_election", "election"),
    ({**TERMINATED, "terminated_at": None}, "missing_terminated_at", "terminated_at"),
    ({**TERMINATED, "elected_at": None}, "missing_election", "elected_at"),
    ({"terminated_at": "2026-10-01T00:00:00Z"}, "terminated_at_not_terminated", "terminated_at"),
    ({**TERMINATED, "election": "keep"}, "unknown_election", "election"),
    ({**TERMINATED, "elected_at": "2026-09-01T00:00:00"}, "naive_timestamp", "elected_at"),
    ({"instructions": {"chat_transcripts": "P100Y"}}, "bad_instruction", "instructions.chat_transcripts"),
    ({"instructions": {"no_such_class": "P1D"}}, "bad_instruction", "instructions.no_such_class"),
    ({"instructions": "{not json"}, "bad_instruction", "instructions"),
    ({"instructions": {"chat_transcripts": "forever"}}, "bad_instruction", "instructions"),
    ({"customer": ""}, "bad_customer", "customer"),
    ({"scc": "1999"}, "bad_scc", "scc"),
]


@pytest.mark.parametrize(("change", "reason", "field"), BAD_ROWS, ids=[f"{r}-{f}" for _, r, f in BAD_ROWS])
def test_a_bad_row_is_refused_with_its_reason_and_field(change: dict, reason: str, field: str) -> None:
    assert account_from_row({**GOOD, **change}, RULESET) == RowProblem(reason, field)
    assert reason in REASONS


def test_every_reason_code_but_duplicate_id_has_a_row_that_gives_it() -> None:
    assert {reason for _, reason, _ in BAD_ROWS} | {"duplicate_id", "bad_value"} == REASONS


def test_one_bad_row_leaves_the_others_and_names_the_account_not_the_value() -> None:
    rows = [("row 1", {**GOOD, "id": "acct_1"}), ("row 2", {**GOOD, "id": "acct_2", "state": "Frozen by Jane Doe"}),
            ("row 3", {**GOOD, "id": "acct_3"})]
    registry = collect(rows, RULESET, "sql:app_db/accounts")
    assert sorted(registry.accounts) == ["acct_1", "acct_3"]
    [refused] = registry.rejected
    assert (refused.account_id, refused.reason, refused.field, refused.row) == (
        "acct_2", "unknown_state", "state", "sql:app_db/accounts row 2")
    snapshot = registry.snapshot()
    assert snapshot["accounts"] == 2 and snapshot["rejected"] == [
        {"account_id": "acct_2", "reason": "unknown_state", "field": "state"}]
    assert "Jane" not in repr(snapshot) and "Frozen" not in summary_text(snapshot)
    assert summary_text(snapshot) == ("registry: 2 accounts from sql:app_db/accounts, 1 row refused: "
                                      "acct_2 unknown_state (state)")


def test_a_duplicate_id_refuses_every_row_of_it() -> None:
    rows = [("row 1", {**GOOD, "id": "acct_1"}), ("row 2", {**GOOD, "id": "acct_2"}),
            ("row 3", {**GOOD, "id": "acct_1", "state": "suspended"}),
            ("row 4", {**GOOD, "id": "acct_1", "state": "?"})]
    registry = collect(rows, RULESET, "http:app_api/accounts")
    assert list(registry.accounts) == ["acct_2"]
    assert sorted((r.row, r.reason) for r in registry.rejected) == [
        ("http:app_api/accounts row 1", "duplicate_id"), ("http:app_api/accounts row 3", "duplicate_id"),
        ("http:app_api/accounts row 4", "unknown_state")]


def test_the_digest_changes_with_any_accepted_entry_and_an_entry_has_its_own() -> None:
    one = collect([("row 1", GOOD)], RULESET, "s")
    other = collect([("row 1", {**GOOD, "state": "suspended"})], RULESET, "s")
    assert one.sha256 != other.sha256
    assert one.entry_sha256("acct_1") != other.entry_sha256("acct_1")
    assert one.snapshot("acct_1")["account"] == {"account_id": "acct_1", "sha256": one.entry_sha256("acct_1")}


# --- registry.yaml ----------------------------------------------------------------------------------------------

def test_the_shipped_registry_yaml_names_the_application_database() -> None:
    source = load_config(REPO / "retention_rules" / "registry.yaml").source
    assert source.kind == "sql" and source.label == "sql:app_db/accounts"


@pytest.mark.parametrize(("text", "field"), [
    ("source: {kind: sql, conn_id: app_db}\n", "source.sql"),  # neither table nor query
    ("source: {kind: sql, conn_id: app_db, table: accounts, query: SELECT 1}\n", "source.sql"),
    ("source: {kind: sql, conn_id: app_db, query: 'DELETE FROM accounts'}\n", "source.sql"),
    ("source: {kind: sql, conn_id: app_db, table: accounts, columns: {state: 'x; drop'}}\n", "source.columns.state"),
    ("source: {kind: http, conn_id: app_api, path: accounts}\n", "source.path"),
    ("source: {kind: ldap, conn_id: x}\n", "source"),
])
def test_a_bad_registry_yaml_is_refused_with_file_line_and_field(tmp_path: Path, text: str, field: str) -> None:
    path = tmp_path / "registry.yaml"
    path.write_text(text)
    with pytest.raises(RulesError) as refused:
        load_config(path)
    assert any(issue.field.startswith(field) and issue.line == 1 for issue in refused.value.issues), \
        refused.value.issues


def test_an_accounts_file_wins_over_registry_yaml(tmp_path: Path) -> None:
    registry_yaml = tmp_path / "registry.yaml"
    registry_yaml.write_text("source: {kind: sql, conn_id: nowhere, table: accounts}\n")  # never read
    settings = Settings(rules_dir=REPO / "retention_rules", registry_file=registry_yaml,
                        accounts_file=REPO / "demo" / "accounts.yaml")
    registry = load_registry(settings, RULESET)
    assert registry.source == "file:accounts.yaml" and len(registry.accounts) == 6


def test_registry_yaml_can_name_a_file_relative_to_itself(tmp_path: Path) -> None:
    (tmp_path / "accounts.yaml").write_text((REPO / "demo" / "accounts.yaml").read_text())
    (tmp_path / "registry.yaml").write_text("source: {kind: file, path: accounts.yaml}\n")
    registry = load_registry(Settings(rules_dir=REPO / "retention_rules", registry_file=tmp_path / "registry.yaml"),
                             RULESET)
    assert isinstance(registry, Registry) and registry.source == "file:accounts.yaml" and not registry.rejected


def test_the_file_source_stays_strict_one_bad_entry_refuses_the_file(tmp_path: Path) -> None:
    text = (REPO / "demo" / "accounts.yaml").read_text().replace("state: trial", "state: closed")
    (tmp_path / "accounts.yaml").write_text(text)
    with pytest.raises(RulesError) as refused:
        load_registry(Settings(rules_dir=REPO / "retention_rules", accounts_file=tmp_path / "accounts.yaml"), RULESET)
    assert any(issue.field.endswith(".state") for issue in refused.value.issues)


def test_no_registry_at_all_says_what_to_set(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no account registry"):
        load_registry(Settings(rules_dir=REPO / "retention_rules", registry_file=tmp_path / "none.yaml"), RULESET)
