"""The forecast on the embedded stack: what the sweep will delete per day and why, how a rule change moves
it, and that a termination is its offboarding's, not the sweep's. Seeded ages (days): 1, 20, 45, 100, 200,
400, 800, 1200, 2500, 4000 (plus up to 23 hours), three records of each per account and table."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pendulum
from click.testing import CliRunner

from retention.cli import main

REPO = Path(__file__).resolve().parents[2]
PER_AGE = 3


def forecast(stack, *args: str, at=None) -> dict:
    result = CliRunner().invoke(main, ["forecast", "--at", (at or stack.now).isoformat(), "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def lines_of(document: dict, location: str, account: str) -> list[dict]:
    return [line for line in document["lines"] if (line["location"], line["account_id"]) == (location, account)]


def test_day_zero_is_what_the_next_sweep_deletes_and_nothing_else_falls_due_this_month(stack) -> None:
    lines = lines_of(forecast(stack, "--days", "30"), "chat_conversations", "acct_1001")
    assert [(line["day"], line["records"], line["rule_id"]) for line in lines] == [
        (stack.now.to_date_string(), 4 * PER_AGE, "chat-transcripts-in-service")]  # ages 800..4000, two years
    assert "P2Y after created_at" in lines[0]["why"]


def test_a_shorter_retention_moves_records_into_the_forecast(stack, tmp_path, monkeypatch) -> None:
    rules = tmp_path / "rules"
    shutil.copytree(REPO / "retention_rules", rules)
    text = (rules / "rules.yaml").read_text()
    (rules / "rules.yaml").write_text(re.sub(r"(id: chat-transcripts-in-service\n(?:.*\n){2}    retain_for: )P2Y",
                                             r"\1P410D", text))
    monkeypatch.setenv("RETENTION_RULES_DIR", str(rules))

    lines = lines_of(forecast(stack, "--days", "30"), "chat_conversations", "acct_1001")

    later = [line for line in lines if line["day"] != stack.now.to_date_string()]
    assert sum(line["records"] for line in later) == PER_AGE  # the records aged 400 days, due from day 10
    assert {line["day"] for line in later} <= {stack.now.add(days=d).to_date_string() for d in (9, 10)}
    assert all(line["cutoff"] and line["action"] == "delete" for line in later)


def test_a_terminated_accounts_grace_period_ending_is_its_offboardings_due_date_not_a_sweep(stack, tmp_path,
                                                                                              monkeypatch) -> None:
    accounts = tmp_path / "accounts.yaml"
    text = (REPO / "demo" / "accounts.yaml").read_text()
    accounts.write_text(text.replace("terminated_at: 2026-09-30T23:59:59Z",
                                     f"terminated_at: {stack.now.subtract(days=20).isoformat()}"))
    monkeypatch.setenv("RETENTION_ACCOUNTS_FILE", str(accounts))

    document = forecast(stack, "--days", "30")

    # The sweep never deletes a terminated account wholesale: its offboarding does (approved, certified).
    assert lines_of(document, "chat_conversations", "acct_4004") == []
    assert not [line for line in document["lines"] if line["account_id"] == "acct_4004" and line["cutoff"] is None]
    due = [t for t in document["terminations_due"] if t["account_id"] == "acct_4004"]
    assert [(t["due_at"][:10], t["choice"], t["overdue"]) for t in due] == [
        (stack.now.add(days=10).to_date_string(), "delete", False)]  # 30 days after its termination
    assert "acct_4004" not in {t["account_id"] for t in document["overdue_terminations"]}


def test_held_data_is_not_forecast(stack) -> None:
    from retention.ledger import Ledger

    with Ledger.open(stack.ledger_url) as ledger:
        ledger.place_hold(account_id="acct_1001", data_class="chat_transcripts", reason="litigation",
                          reference="LEGAL-1", placed_by="counsel")
    document = forecast(stack, "--days", "30", at=pendulum.now("UTC"))  # the hold is in force from now on
    assert not lines_of(document, "chat_conversations", "acct_1001")
    assert lines_of(document, "chat_conversations", "acct_6006")  # the hold is only acct_1001's
