"""The `retention` command as a user runs it: output, --json, exit codes 0 / 1 / 2."""

from __future__ import annotations

import getpass
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from retention.cli import main

REPO = Path(__file__).resolve().parents[2]
ACCOUNTS = str(REPO / "demo" / "accounts.yaml")
RULES = str(REPO / "retention_rules")


@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.setenv("RETENTION_DATABASE_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    monkeypatch.setenv("RETENTION_RULES_DIR", RULES)
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(main, list(args), catch_exceptions=False)

    return invoke


def test_validate_the_shipped_rules(run):
    result = run("rules", "validate")
    assert result.exit_code == 0, result.output
    from retention.rules import load_ruleset

    shipped = load_ruleset(RULES)
    assert f"valid — {len(shipped.rules)} rules over {len(shipped.data_classes.data_classes)} data classes (and " \
           f"{len(shipped.processor_rules)} over {len(shipped.processor_data_classes)} classes of the processor's " \
           "own data)" in result.output


def test_validate_a_broken_rules_dir_exits_1_naming_file_line_and_field(run, tmp_path):
    broken = tmp_path / "rules"
    shutil.copytree(RULES, broken)
    text = (broken / "rules.yaml").read_text().replace("retain_for: P1Y\n", "retain_for: one year\n", 1)
    (broken / "rules.yaml").write_text(text)
    line = next(n for n, text_line in enumerate(text.splitlines(), 1) if "one year" in text_line)

    result = run("rules", "validate", "--rules-dir", str(broken))
    assert result.exit_code == 1
    assert f"rules.yaml:{line}:17: rules[2].retain_for: 'one year' is not an ISO-8601 duration" in result.output

    as_json = run("rules", "validate", "--rules-dir", str(broken), "--json")
    assert as_json.exit_code == 1
    issue = json.loads(as_json.output)["issues"][0]
    assert (issue["line"], issue["column"], issue["field"]) == (line, 17, "rules[2].retain_for")


def test_unknown_option_is_a_usage_error(run):
    assert run("rules", "validate", "--no-such-flag").exit_code == 2


def test_explain_without_an_account_registry_is_a_usage_error(run, monkeypatch, tmp_path):
    monkeypatch.delenv("RETENTION_ACCOUNTS_FILE", raising=False)
    monkeypatch.setenv("RETENTION_REGISTRY_FILE", str(tmp_path / "registry.yaml"))  # no such file
    result = run("rules", "explain", "acct_1001", "chat_transcripts")
    assert result.exit_code == 2 and "no account registry" in result.output


def test_explain_with_an_unreachable_registry_database_says_which_registry(run, monkeypatch):
    monkeypatch.delenv("RETENTION_ACCOUNTS_FILE", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_APP_DB", raising=False)  # registry.yaml's sql source names app_db
    result = run("rules", "explain", "acct_1001", "chat_transcripts")
    assert result.exit_code == 1 and "registry.yaml) could not be read" in result.output


def test_explain_one_decision(run):
    result = run("rules", "explain", "acct_4004", "billing_records", "--accounts", ACCOUNTS,
                 "--at", "2026-11-23T00:00:00Z")
    assert result.exit_code == 0, result.output
    assert "billing-records-terminated-eea-ch" in result.output
    assert "retain_isolated; isolated until then" in result.output
    assert "statute: DE §147 AO" in result.output


def test_explain_as_json_lists_every_data_class(run):
    result = run("rules", "explain", "acct_5005", "--accounts", ACCOUNTS, "--at", "2026-11-23T00:00:00Z", "--json")
    decisions = json.loads(result.output)["decisions"]
    from retention.rules import load_ruleset

    assert {d["data_class"] for d in decisions} == set(load_ruleset(RULES).data_classes.data_classes)
    transcripts = next(d for d in decisions if d["data_class"] == "chat_transcripts")
    assert (transcripts["action"], transcripts["election"], transcripts["due_at"]) == (
        "return_then_delete", "return", "2026-12-15T00:00:00+00:00")
    assert transcripts["rule_position"].endswith("rules.yaml:" + transcripts["rule_position"].split(":")[-1])


def test_explain_unknown_account_exits_1(run):
    result = run("rules", "explain", "acct_nope", "--accounts", ACCOUNTS)
    assert result.exit_code == 1 and "not in" in result.output


def test_a_placed_hold_blocks_the_decision_until_released(run):
    placed = run("hold", "place", "--account", "acct_1001", "--data-class", "chat_transcripts",
                 "--reason", "litigation", "--reference", "LEGAL-1", "--json")
    assert placed.exit_code == 0, placed.output
    hold_id = json.loads(placed.output)["hold"]["id"]
    assert json.loads(placed.output)["hold"]["placed_by"] == f"cli:{getpass.getuser()}"

    explained = json.loads(run("rules", "explain", "acct_1001", "chat_transcripts", "--accounts", ACCOUNTS,
                               "--json").output)
    assert explained["decisions"][0]["blocked_by"] == [hold_id]
    assert hold_id in run("hold", "list").output

    assert run("hold", "release", hold_id, "--reason", "case closed").exit_code == 0
    explained = json.loads(run("rules", "explain", "acct_1001", "chat_transcripts", "--accounts", ACCOUNTS,
                               "--json").output)
    assert explained["decisions"][0]["blocked_by"] == []
    assert "no legal holds in force" in run("hold", "list").output
    assert hold_id in run("hold", "list", "--all").output


@pytest.mark.parametrize("command", [
    ["hold", "place", "--account", "acct_1001", "--reason", "r", "--reference", "T-1", "--by", "counsel.1"],
    ["hold", "release", "hold-1", "--reason", "r", "--by", "counsel.1"],
])
def test_no_command_takes_a_typed_name_for_who_acts(run, command):
    """Who acts is the operating-system account running the CLI (cli:<user>), never a name typed in."""
    result = run(*command)
    assert result.exit_code == 2 and "No such option '--by'" in result.output
    assert "no legal holds" in run("hold", "list", "--all").output


def test_hold_on_an_unknown_data_class_is_refused(run):
    result = run("hold", "place", "--data-class", "faxes", "--reason", "x", "--reference", "T-1")
    assert result.exit_code == 1 and "unknown data class 'faxes'" in result.output


def test_hold_on_an_account_missing_from_the_registry_is_refused(run):
    result = run("hold", "place", "--account", "acct_l001", "--accounts", ACCOUNTS, "--reason", "x",
                 "--reference", "T-1")
    assert result.exit_code == 1 and "no account 'acct_l001'" in result.output
    assert "no legal holds" in run("hold", "list", "--all").output


def test_hold_with_an_email_in_its_reference_is_refused(run):
    result = run("hold", "place", "--account", "acct_1001", "--reason", "x", "--reference", "jane@example.com")
    assert result.exit_code == 1


TAMPERING = {
    "edit": ["UPDATE events SET actor = 'mallory' WHERE seq = 2"],
    "delete": ["DELETE FROM events WHERE seq = 2"],
    "reorder": ["UPDATE events SET seq = -2 WHERE seq = 2", "UPDATE events SET seq = 2 WHERE seq = 3",
                "UPDATE events SET seq = 3 WHERE seq = -2"],
}


@pytest.mark.parametrize("tampering", TAMPERING)
def test_ledger_verify_fails_on_tampering_and_names_the_first_bad_event(run, tmp_path, tampering):
    for n in range(4):
        run("hold", "place", "--account", f"acct_{n}", "--reason", "r", "--reference", f"T-{n}")
    intact = run("ledger", "verify")
    assert intact.exit_code == 0 and "4 event(s)" in intact.output

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    with engine.begin() as conn:
        # Migration 0003's triggers refuse these edits; whoever can write the file can drop them first.
        for name in conn.execute(sa.text("SELECT name FROM sqlite_master WHERE type = 'trigger' "
                                         "AND tbl_name = 'events'")).scalars().all():
            conn.execute(sa.text(f"DROP TRIGGER {name}"))
        for statement in TAMPERING[tampering]:
            conn.execute(sa.text(statement))
    engine.dispose()

    result = run("ledger", "verify", "--json")
    assert result.exit_code == 1
    document = json.loads(result.output)
    assert (document["ok"], document["first_bad_seq"]) == (False, 2)
    assert "2" in document["reason"]
    assert "FAILED" in run("ledger", "verify").output


def test_the_console_script_is_installed_in_the_venv():
    script = Path(sys.executable).parent / "retention"
    result = subprocess.run([str(script), "rules", "validate", "--rules-dir", RULES, "--json"],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["ok"] is True


# --- a ledger that cannot be opened: one line naming the setting, exit 2, no traceback (issue 14, item 8) ---

@pytest.fixture
def silent_server():
    """A TCP server that accepts connections and never answers (a hung or firewalled database)."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    yield f"postgresql://retention:secret@127.0.0.1:{server.getsockname()[1]}/ledger"
    server.close()


def _refused_port() -> int:
    import socket

    with socket.socket() as probe:  # bound then closed: nothing listens there
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _retention(args: list[str], env: dict) -> subprocess.CompletedProcess:
    script = Path(sys.executable).parent / "retention"
    return subprocess.run([str(script), *args], capture_output=True, text=True, cwd=REPO, timeout=120,
                          env={**os.environ, "RETENTION_RULES_DIR": RULES, "PGCONNECT_TIMEOUT": "2", **env})


def _assert_one_line_error(result, setting: str, cause: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"Error: {setting}: "), lines[0]
    assert cause in lines[0], lines[0]
    assert "secret" not in result.stderr  # a password in the URL is never printed


LEDGER_FAILURES = {
    "unparseable": (lambda server: "not a database url", "could not parse"),
    "server does not answer": (lambda server: server, "timeout"),
    "server refuses": (lambda server: f"postgresql://retention:secret@127.0.0.1:{_refused_port()}/ledger", "refused"),
    "sqlite in a missing directory": (lambda server: "sqlite:////nonexistent-dir-for-retention/ledger.db",
                                      "/nonexistent-dir-for-retention does not exist"),
    "driver not installed": (lambda server: "mysql://retention:secret@127.0.0.1/ledger", "driver"),
}


@pytest.mark.parametrize("failure", LEDGER_FAILURES)
def test_a_ledger_that_cannot_be_opened_ends_in_one_line_naming_the_setting(failure, silent_server):
    url, cause = LEDGER_FAILURES[failure]
    result = _retention(["hold", "list"], {"RETENTION_DATABASE_URL": url(silent_server)})
    _assert_one_line_error(result, "RETENTION_DATABASE_URL", cause)


def test_the_command_line_flag_is_named_when_it_was_the_setting_used(silent_server):
    result = _retention(["ledger", "verify", "--database-url", "sqlite:////nonexistent-dir-for-retention/l.db"], {})
    _assert_one_line_error(result, "--database-url", "does not exist")


COMMANDS_THAT_OPEN_THE_LEDGER = [
    ["hold", "list"],
    ["hold", "place", "--account", "acct_1001", "--reason", "r", "--reference", "T-1"],
    ["hold", "release", "hold-1", "--reason", "r"],
    ["rules", "explain", "acct_1001", "--accounts", ACCOUNTS],
    ["sweep", "--dry-run", "--accounts", ACCOUNTS],
    ["forecast", "--accounts", ACCOUNTS],
    ["replay", "--since", "2026-01-01T00:00:00Z", "--accounts", ACCOUNTS],
    ["report", "run-1"],
    ["ledger", "verify"],
    ["ledger", "migrate"],
]


@pytest.mark.parametrize("args", COMMANDS_THAT_OPEN_THE_LEDGER, ids=lambda a: " ".join(a[:2]))
def test_every_command_reports_an_unopenable_ledger_the_same_way(run, args):
    runner = CliRunner()
    result = runner.invoke(main, args, env={"RETENTION_DATABASE_URL": "sqlite:////nonexistent-dir-for-retention/l.db"})
    assert result.exit_code == 2, (result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.stderr.strip().splitlines() == [
        "Error: RETENTION_DATABASE_URL: cannot open the ledger sqlite:////nonexistent-dir-for-retention/l.db: "
        "unable to open database file (the directory /nonexistent-dir-for-retention does not exist)"]


# --- explain says where each period comes from (issue 14, item 7) ------------------------------------------

AT = "2026-11-23T00:00:00Z"


def _period_line(output: str, data_class: str) -> str:
    block = output.split(f"\n  {data_class}\n", 1)[1]
    return next(line for line in block.splitlines() if line.strip().startswith("period"))


def test_explain_names_law_as_the_source_of_a_statutory_period(run):
    result = run("rules", "explain", "acct_4004", "billing_records", "--accounts", ACCOUNTS, "--at", AT)
    assert result.exit_code == 0, result.output
    assert _period_line(result.output, "billing_records").strip() == \
        "period  P10Y from created_at — set by law (statute)"


def test_explain_names_the_processors_default_and_the_contract(run):
    ours = run("rules", "explain", "acct_1001", "chat_transcripts", "--accounts", ACCOUNTS, "--at", AT).output
    assert _period_line(ours, "chat_transcripts").strip() == (
        "period  P2Y from created_at — the processor's default (processor policy; counsel to confirm)")
    contract = run("rules", "explain", "acct_2002", "chat_transcripts", "--accounts", ACCOUNTS, "--at", AT).output
    assert _period_line(contract, "chat_transcripts").strip() == (
        "period  P90D from created_at — the contract (override acct-2002-short-transcripts)")


def test_explain_names_the_customers_instruction(run, tmp_path):
    registry = tmp_path / "accounts.yaml"
    registry.write_text(Path(ACCOUNTS).read_text().replace(
        "    customer: Northwind Traders GmbH\n",
        "    customer: Northwind Traders GmbH\n    instructions: {chat_transcripts: P180D, call_recordings: P30D}\n"))
    result = run("rules", "explain", "acct_1001", "--accounts", str(registry), "--at", AT)
    assert result.exit_code == 0, result.output
    assert _period_line(result.output, "chat_transcripts").strip() == (
        "period  P180D from created_at — the customer's instruction (account registry)")
    decisions = json.loads(run("rules", "explain", "acct_1001", "--accounts", str(registry), "--at", AT,
                               "--json").output)
    sources = {d["data_class"]: d["period_source"] for d in decisions["decisions"]}
    assert sources["chat_transcripts"] == sources["call_recordings"] == "customer's instruction"
    assert sources["billing_records"] == "law" and sources["contact_records"] == "processor's default"


def test_explain_refuses_an_instruction_outside_the_rules_bounds(run, tmp_path):
    registry = tmp_path / "accounts.yaml"
    text = Path(ACCOUNTS).read_text().replace(
        "    customer: Northwind Traders GmbH\n",
        "    customer: Northwind Traders GmbH\n    instructions: {chat_transcripts: P5Y}\n")
    registry.write_text(text)
    result = run("rules", "explain", "acct_1001", "--accounts", str(registry))
    line = next(n for n, text_line in enumerate(text.splitlines(), 1) if "instructions:" in text_line)
    assert result.exit_code == 1
    assert f"accounts.yaml:{line}:" in result.output and "accounts[0].instructions.chat_transcripts" in result.output
    assert "outside rule 'chat-transcripts-in-service''s bounds" in result.output


def test_the_processors_own_data_has_its_own_explanation(run):
    result = run("rules", "processor-data", "--at", AT)
    assert result.exit_code == 0, result.output
    assert "website_analytics" in result.output and "newsletter_subscribers" in result.output
    assert "belongs to no customer account" in result.output
    document = json.loads(run("rules", "processor-data", "--at", AT, "--json").output)
    pardot = next(d for d in document["decisions"] if d["data_class"] == "marketing_automation_visitors")
    assert (pardot["retain_for"], pardot["period_source"], pardot["cutoff"]) == (
        "P10Y", "processor's default", "2016-11-23T00:00:00+00:00")
    explained = json.loads(run("rules", "explain", "acct_1001", "--accounts", ACCOUNTS, "--json").output)
    assert not {d["data_class"] for d in explained["decisions"]} & {d["data_class"] for d in document["decisions"]}


def test_validate_checks_registry_yaml_too(run, tmp_path, monkeypatch):
    assert json.loads(run("rules", "validate", "--json").output)["registry_source"] == "sql:app_db/accounts"
    bad = tmp_path / "registry.yaml"
    bad.write_text("source: {kind: sql, conn_id: app_db}\n")
    monkeypatch.setenv("RETENTION_REGISTRY_FILE", str(bad))
    result = run("rules", "validate")
    assert result.exit_code == 1 and "registry.yaml:1:" in result.output and "table or a query" in result.output
