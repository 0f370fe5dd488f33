"""Issue 18's "must show": a sweep over the application database's account registry with one bad row. The bad row
is reported (the ledger's registry.snapshot, the log, the sweep report) and none of its account's data is touched,
while the other accounts' due data is deleted; `retention sweep` run whole, on the embedded stack."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from retention import embedded
from retention.cli import main
from retention.ledger import Ledger
from retention.rules import load_accounts, load_ruleset

REPO = Path(__file__).resolve().parents[2]
BAD = "acct_2002"  # active, with data past its (contract-shortened) transcript period: a sweep would delete some
PER_AGE = 3


@pytest.fixture
def app_registry(stack, monkeypatch: pytest.MonkeyPatch):
    """The stack with its registry read from the application's accounts table (retention_rules/registry.yaml),
    the demo's accounts in it, and BAD's row carrying a state the product does not know."""
    monkeypatch.delenv("RETENTION_ACCOUNTS_FILE")
    accounts = load_accounts(REPO / "demo" / "accounts.yaml", load_ruleset(REPO / "retention_rules"))
    embedded.seed_accounts(stack.app_url, accounts.values())
    engine = sa.create_engine(stack.app_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE accounts SET state = 'closed' WHERE id = :id"), {"id": BAD})
    engine.dispose()
    return stack


class Lines(logging.Handler):
    """The registry's log lines, as its own logger emits them (Airflow's logging setup owns the root handlers)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_a_bad_registry_row_is_reported_and_skipped_while_the_rest_of_the_sweep_completes(app_registry) -> None:
    stack = app_registry
    before = stack.rows()
    objects_before = {bucket: stack.objects(bucket, BAD) for bucket in ("chat-attachments", "call-recordings")}

    log, warnings = logging.getLogger("retention.registry"), Lines()
    log.addHandler(warnings)
    try:
        result = CliRunner().invoke(main, ["sweep", "--json"], catch_exceptions=False)
    finally:
        log.removeHandler(warnings)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["status"] == "succeeded"

    # Reported: in the sweep's report, the ledger's snapshot of the registry, and one WARNING line.
    refused = {"account_id": BAD, "reason": "unknown_state", "field": "state"}
    assert report["registry"]["source"] == "sql:app_db/accounts" and report["registry"]["accounts"] == 5
    assert report["registry"]["rejected"] == [refused]
    with Ledger.open(stack.ledger_url) as ledger:
        [snapshot] = ledger.run_events(report["run_id"], "registry.snapshot")
        planned_accounts = {task.account_id for task in ledger.tasks(report["run_id"])}
        touched = [e for e in ledger.events() if e.payload.get("account_id") == BAD]
    assert snapshot.payload["rejected"] == [refused] and snapshot.payload["accounts"] == 5
    [warning] = [line for line in warnings.lines if BAD in line]
    assert re.fullmatch(f"registry row refused: account {BAD}, unknown_state \\(state\\) at sql:app_db/accounts "
                        "row [0-9]+; nothing of it is planned or deleted", warning), warning
    text = CliRunner().invoke(main, ["report", report["run_id"]], catch_exceptions=False).output
    assert text.splitlines()[0] == f"registry: 5 accounts from sql:app_db/accounts, 1 row refused: {BAD} " \
                                   "unknown_state (state)"

    # Skipped: nothing of it planned, no event about it, every row and object of it still there.
    assert BAD not in planned_accounts and planned_accounts  # the others were planned
    assert touched == []
    after = stack.rows()
    assert {key: n for key, n in after.items() if key[1] == BAD} == {key: n for key, n in before.items()
                                                                     if key[1] == BAD}
    assert {bucket: stack.objects(bucket, BAD) for bucket in objects_before} == objects_before

    # The rest completed: another active account's due transcripts are gone (two years in service), the rest kept.
    assert after[("chat_conversations", "acct_1001")] == 6 * PER_AGE < before[("chat_conversations", "acct_1001")]
    assert report["deleted"] > 0


def test_the_sweeps_certificate_names_the_registry_state_it_acted_on(app_registry) -> None:
    from retention.certificates import inventory_locations
    from retention.certificates.content import build

    result = CliRunner().invoke(main, ["sweep", "--json"], catch_exceptions=False)
    run_id = json.loads(result.stdout)["run_id"]
    with Ledger.open(app_registry.ledger_url) as ledger:
        [snapshot] = ledger.run_events(run_id, "registry.snapshot")
        content = build(ledger, run_id, "acct_1001", exporter="Northwind Traders GmbH", importer="Processor",
                        locations=inventory_locations(REPO / "retention_rules"))
    assert content["registry"] == {"source": "sql:app_db/accounts", "accounts": 5,
                                   "sha256": snapshot.payload["sha256"]}


def test_an_offboarding_records_the_digest_of_the_accounts_own_registry_entry(app_registry) -> None:
    import pendulum

    from retention.certificates.content import registry_state
    from retention.engine import SweepContext
    from retention.offboarding.plan import plan_offboarding
    from retention.offboarding.request import parse_request
    from retention.settings import Settings

    with Ledger.open(app_registry.ledger_url) as ledger:
        ctx = SweepContext.load(Settings.from_env(), ledger)
        request = parse_request({"account_id": "acct_4004", "choice": "delete", "reference": "OFF-1",
                                 "subprocessors": []})
        run_id = plan_offboarding(ctx, request, pendulum.now("UTC"), requested_by="api:staff-1", actor="test")["run_id"]
        state = registry_state(ledger, run_id, "acct_4004")
        assert ctx.registry is not None
        assert state == {"source": "sql:app_db/accounts", "accounts": 5, "sha256": ctx.registry.sha256,
                         "account_entry_sha256": ctx.registry.entry_sha256("acct_4004")}
        assert registry_state(ledger, run_id, "acct_1001") == {  # another account: no entry of its own here
            "source": "sql:app_db/accounts", "accounts": 5, "sha256": ctx.registry.sha256}
