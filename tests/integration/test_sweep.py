"""The sweep end to end on the embedded stack: real PostgreSQL, S3 over HTTP, the shipped rules.

Seeded ages (days): 1, 20, 45, 100, 200, 400, 800, 1200, 2500, 4000 (plus up to 23 hours), three
records of each per account and table. Expected results below follow from retention_rules/ by hand.
"""

from __future__ import annotations

from collections import Counter

import pytest
import sqlalchemy as sa

from retention.engine import SweepContext, sweep
from retention.ledger import Ledger
from retention.ledger.models import Event
from retention.rules import RulesError
from retention.settings import Settings

PER_AGE = 3
ALL = 10 * PER_AGE


def run_sweep(stack, *, dry_run=False, run_id=None, **context):
    with Ledger.open(stack.ledger_url) as ledger:
        ctx = SweepContext.load(Settings.from_env(), ledger, **context)
        return sweep(ctx, stack.now, dry_run=dry_run, actor="test", run_id=run_id)


def events(stack) -> list[Event]:
    with Ledger.open(stack.ledger_url) as ledger:
        return list(ledger.events())


def test_dry_run_counts_and_deletes_nothing(stack):
    before = stack.rows()
    report = run_sweep(stack, dry_run=True)
    assert stack.rows() == before
    assert report.dry_run and report.status == "succeeded"
    line = next(ln for ln in report.lines if (ln.location, ln.account_id) == ("chat_conversations", "acct_1001"))
    assert (line.affected, line.kept) == (4 * PER_AGE, 6 * PER_AGE)  # would delete ages 800..4000
    assert not any(e.kind.startswith("batch.") for e in events(stack))


def test_sweep_deletes_exactly_what_the_rules_make_due(stack):
    with Ledger.open(stack.ledger_url) as ledger:
        ledger.place_hold(account_id="acct_3003", data_class=None, reason="litigation", reference="LEGAL-1",
                          placed_by="counsel")
    report = run_sweep(stack)
    assert report.status == "succeeded"
    left = stack.rows()
    expected = {
        # chat transcripts: two years in service; the acct_2002 contract says 90 days
        ("chat_conversations", "acct_1001"): 6 * PER_AGE,
        ("chat_conversations", "acct_2002"): 3 * PER_AGE,
        ("chat_conversations", "acct_3003"): ALL,  # legal hold
        ("chat_conversations", "acct_4004"): 0,  # terminated, elected delete, 30 days passed
        ("chat_conversations", "acct_5005"): ALL,  # terminated, elected return: the offboarding returns first
        ("chat_conversations", "acct_6006"): 6 * PER_AGE,
        # visitor activity: 13 months
        ("page_views", "acct_1001"): 5 * PER_AGE,
        ("page_views", "acct_4004"): 0,
        # users are anonymized in service, and kept 90 days after termination (not yet due)
        ("app_users", "acct_1001"): ALL,
        ("app_users", "acct_4004"): ALL,
        # invoices: statutory periods (10 years EEA/CH, 7 years US), isolated after termination
        ("invoices", "acct_1001"): ALL - PER_AGE,
        ("invoices", "acct_2002"): ALL - PER_AGE,
        ("invoices", "acct_4004"): ALL - PER_AGE,
        ("invoices", "acct_5005"): ALL - PER_AGE,
    }
    assert {key: left[key] for key in expected} == expected
    assert stack.objects("call-recordings", "acct_4004") == 0
    assert stack.objects("call-recordings", "acct_1001") == 2 * PER_AGE + 1  # recordings are days old: kept
    assert stack.objects("chat-attachments", "acct_1001") == 6 * PER_AGE
    anonymized = next(ln for ln in report.lines if (ln.location, ln.account_id) == ("app_users", "acct_1001"))
    assert (anonymized.action, anonymized.affected) == ("anonymize", 3 * PER_AGE)


def test_children_go_with_their_parents(stack):
    engine = sa.create_engine(stack.app_url)
    orphans = sa.text("SELECT count(*) FROM chat_messages m LEFT JOIN chat_conversations c "
                      "ON c.id = m.conversation_id WHERE c.id IS NULL")
    run_sweep(stack)
    with engine.connect() as conn:
        assert conn.execute(orphans).scalar() == 0
        assert conn.execute(sa.text("SELECT count(*) FROM chat_messages")).scalar() == \
            2 * conn.execute(sa.text("SELECT count(*) FROM chat_conversations")).scalar()
    engine.dispose()


def test_ledger_totals_equal_what_left_the_stores(stack):
    before = stack.rows()
    report = run_sweep(stack)
    after = stack.rows()
    for line in report.lines:
        if line.action == "delete" and line.location in ("chat_conversations", "page_views", "invoices", "contacts"):
            assert before[(line.location, line.account_id)] - after[(line.location, line.account_id)] == line.affected


def test_every_destructive_batch_has_an_intent_before_and_an_outcome_after(stack):
    run_sweep(stack)
    open_intents: dict[str, int] = {}
    outcomes = 0
    for event in events(stack):
        if event.kind == "batch.intent":
            assert event.task_id not in open_intents, "a second intent before the first one's outcome"
            open_intents[event.task_id] = event.seq
        elif event.kind == "batch.outcome":
            assert open_intents.pop(event.task_id) < event.seq
            outcomes += 1
    assert open_intents == {} and outcomes > 0


def test_rerunning_a_finished_run_deletes_nothing_and_changes_no_count(stack):
    first = run_sweep(stack)
    rows, totals = stack.rows(), Counter({(l.location, l.account_id): l.affected for l in first.lines})
    again = run_sweep(stack, run_id=first.run_id)
    assert stack.rows() == rows
    assert Counter({(l.location, l.account_id): l.affected for l in again.lines}) == totals
    fresh = run_sweep(stack)
    assert fresh.deleted == 0 and fresh.anonymized == 0 and stack.rows() == rows


class HoldAfterFirstBatch:
    """Instrumentation around a real store: places a legal hold on acct_1001 after its first deletion."""

    def __init__(self, store, ledger_url):
        self.store, self.ledger_url = store, ledger_url
        self.location_id = store.location_id

    def __getattr__(self, name):
        return getattr(self.store, name)

    def delete(self, batch):
        outcome = self.store.delete(batch)
        with Ledger.open(self.ledger_url) as ledger:
            if not ledger.list_holds():
                ledger.place_hold(account_id="acct_1001", data_class=None, reason="placed mid-run",
                                  reference="LEGAL-7", placed_by="counsel")
        return outcome


def test_a_hold_placed_mid_run_stops_deletion_before_the_next_batch(stack):
    from retention.stores import open_store

    before = stack.rows()
    report = run_sweep(stack, open_store=lambda loc, spec: HoldAfterFirstBatch(open_store(loc, spec), stack.ledger_url))
    acct = [ln for ln in report.lines if ln.account_id == "acct_1001" and ln.action == "delete"]
    deleted = [ln for ln in acct if ln.affected]
    assert len(deleted) == 1, "only the batch before the hold deleted anything"
    held = [ln for ln in acct if ln.status == "held"]
    assert held and all(ln.affected == 0 for ln in held)
    after = stack.rows()
    for ln in held:
        if (ln.location, "acct_1001") in before:
            assert after[(ln.location, "acct_1001")] == before[(ln.location, "acct_1001")]


def test_no_personal_data_reaches_the_ledger(stack):
    run_sweep(stack)
    text = " ".join(str(e.payload) + e.actor for e in events(stack))
    assert "example.invalid" not in text and "tenants/" not in text and "Synthetic" not in text


def test_an_invalid_inventory_stops_the_sweep_before_any_store_is_touched(stack, tmp_path, monkeypatch):
    import shutil

    broken = tmp_path / "rules"
    shutil.copytree(stack.env["RETENTION_RULES_DIR"], broken)
    systems = broken / "systems.yaml"
    systems.write_text(systems.read_text().replace("table: page_views", "tabel: page_views"))
    monkeypatch.setenv("RETENTION_RULES_DIR", str(broken))
    before = stack.rows()
    with pytest.raises(RulesError) as caught:
        run_sweep(stack)
    assert any(i.field == "locations.page_views.tabel" for i in caught.value.issues)
    assert stack.rows() == before
    with Ledger.open(stack.ledger_url) as ledger:
        assert ledger.last_run_id("sweep") is None
