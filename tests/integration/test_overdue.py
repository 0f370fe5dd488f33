"""Terminations the sweep leaves to their offboarding, and the ones nobody has offboarded in time (issue 14,
item 6): overdue once the date their data would have fallen due passes with no offboarding run started;
started once an offboarding run for the account is in the ledger (a rejected or superseded one does not count)."""

from __future__ import annotations

import json
from pathlib import Path

import pendulum
import pytest
from click.testing import CliRunner

from retention.cli import main
from retention.engine.overdue import REQUESTED, awaiting_offboarding, offboarded_accounts, overdue_terminations
from retention.engine.tasks import TerminationsOverdue, check_terminations, context
from retention.ledger import Ledger
from retention.offboarding.plan import PLANNED, plan_offboarding
from retention.offboarding.request import OffboardingRequest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def terminations(stack, tmp_path, monkeypatch):
    """acct_4004 terminated 40 days ago (elected delete: its 30 days are over), acct_5005 10 days ago (return)."""
    text = (REPO / "demo" / "accounts.yaml").read_text()
    for fixed, days in (("2026-09-30T23:59:59Z", 40), ("2026-11-15T00:00:00Z", 10)):
        assert f"terminated_at: {fixed}" in text
        text = text.replace(f"terminated_at: {fixed}", f"terminated_at: {stack.now.subtract(days=days).isoformat()}")
    accounts = tmp_path / "accounts.yaml"
    accounts.write_text(text)
    monkeypatch.setenv("RETENTION_ACCOUNTS_FILE", str(accounts))
    return stack


def start_offboarding(account_id: str, choice: str = "delete", **fields) -> str:
    if choice == "return":
        import pyrage

        fields["return_recipient"] = str(pyrage.x25519.Identity.generate().to_public())
    request = OffboardingRequest(account_id=account_id, choice=choice, reference="TKT-14",
                                 **fields)
    with context() as ctx:
        return plan_offboarding(ctx, request, pendulum.now("UTC"), requested_by="api:csm-3", actor="test")["run_id"]


def sweep_run(stack) -> str:
    from retention.engine import plan_sweep

    with context() as ctx:
        return plan_sweep(ctx, stack.now, dry_run=True, actor="test").run_id


def test_the_engine_reads_the_event_the_offboarding_writes() -> None:
    assert REQUESTED == PLANNED


def test_a_termination_past_its_due_date_with_no_offboarding_is_overdue_until_one_starts(terminations) -> None:
    stack = terminations
    with context() as ctx:
        waiting = awaiting_offboarding(ctx, stack.now)
    assert [(t.account_id, t.overdue) for t in waiting] == [("acct_4004", True), ("acct_5005", False)]
    (late,) = [t for t in waiting if t.overdue]
    assert pendulum.parse(late.due_at) == stack.now.subtract(days=10)  # 30 days after its termination
    assert late.choice == "delete"

    run_id = sweep_run(stack)
    with pytest.raises(TerminationsOverdue, match=r"acct_4004 \(terminated .*, elected delete, offboarding due "):
        check_terminations(run_id, actor="test")
    with Ledger.open(stack.ledger_url) as ledger:
        (checked,) = ledger.run_events(run_id, "terminations.checked")
    assert checked.payload["overdue"] == [{"account_id": "acct_4004", "due_at": late.due_at}]  # ids and dates only

    offboarding = start_offboarding("acct_4004")
    assert check_terminations(run_id, actor="test") == {"overdue": []}
    with context() as ctx:
        assert offboarded_accounts(ctx.ledger) == {"acct_4004"}
        # an offboarding its approver rejected ends in no certificate: the termination is overdue again
        ctx.ledger.finish_run(offboarding, "rejected", actor="dpo-7")
        assert [t.account_id for t in overdue_terminations(ctx, stack.now)] == ["acct_4004"]
    # so does one whose certificate was refused (residue, unfinished work): a failed run deletes nothing more
    failed = start_offboarding("acct_4004")
    with context() as ctx:
        assert overdue_terminations(ctx, stack.now) == []
        ctx.ledger.finish_run(failed, "failed", actor="airflow:termination_offboarding")
        assert [t.account_id for t in overdue_terminations(ctx, stack.now)] == ["acct_4004"]


def test_a_legal_hold_does_not_excuse_the_offboarding(terminations) -> None:
    with Ledger.open(terminations.ledger_url) as ledger:
        ledger.place_hold(account_id="acct_4004", data_class=None, reason="litigation", reference="LEGAL-1",
                          placed_by="counsel")
    with context() as ctx:
        assert [t.account_id for t in overdue_terminations(ctx, terminations.now)] == ["acct_4004"]


def test_the_forecast_shows_overdue_terminations_and_those_falling_due_instead_of_sweeping_them(terminations) -> None:
    stack = terminations
    result = CliRunner().invoke(main, ["forecast", "--at", stack.now.isoformat(), "--days", "30", "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert [(t["account_id"], t["choice"], t["due_at"][:10]) for t in document["overdue_terminations"]] == [
        ("acct_4004", "delete", stack.now.subtract(days=10).to_date_string())]
    assert [(t["account_id"], t["due_at"][:10]) for t in document["terminations_due"]] == [
        ("acct_5005", stack.now.add(days=20).to_date_string())]
    # their data is the offboarding's: no line forecasts the sweep deleting it wholesale
    assert not [line for line in document["lines"] if line["account_id"] in ("acct_4004", "acct_5005")
                and line["cutoff"] is None]

    text = CliRunner().invoke(main, ["forecast", "--at", stack.now.isoformat(), "--days", "30"])
    assert "acct_4004" in text.stdout and "OVERDUE" in text.stdout

    start_offboarding("acct_4004")
    start_offboarding("acct_5005", "return")
    after = json.loads(CliRunner().invoke(main, ["forecast", "--at", stack.now.isoformat(), "--json"]).stdout)
    assert after["overdue_terminations"] == [] and after["terminations_due"] == []


def test_the_cli_sweep_records_and_warns_about_overdue_terminations(terminations) -> None:
    stack = terminations
    result = CliRunner().invoke(main, ["sweep", "--dry-run", "--at", stack.now.isoformat(), "--json"])
    assert result.exit_code == 0, result.output  # the sweep itself did its job
    document = json.loads(result.stdout)
    assert [t["account_id"] for t in document["overdue_terminations"]] == ["acct_4004"]
    assert "Warning: 1 termination(s) overdue" in result.stderr
