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
    recordings_4004 = stack.objects("call-recordings", "acct_4004")
    report = run_sweep(stack)
    assert report.status == "succeeded"
    left = stack.rows()
    expected = {
        # chat transcripts: two years in service; the acct_2002 contract says 90 days
        ("chat_conversations", "acct_1001"): 6 * PER_AGE,
        ("chat_conversations", "acct_2002"): 3 * PER_AGE,
        ("chat_conversations", "acct_3003"): ALL,  # legal hold
        # terminated: deleted by their offboardings (approved, certified), never wholesale by the sweep
        ("chat_conversations", "acct_4004"): ALL,  # elected delete, 30 days passed: its offboarding is overdue
        ("chat_conversations", "acct_5005"): ALL,  # elected return
        ("chat_conversations", "acct_6006"): 6 * PER_AGE,
        # visitor activity: 13 months
        ("page_views", "acct_1001"): 5 * PER_AGE,
        ("page_views", "acct_4004"): ALL,
        # users are anonymized in service, and kept 90 days after termination (not yet due)
        ("app_users", "acct_1001"): ALL,
        ("app_users", "acct_4004"): ALL,
        # invoices: statutory periods (10 years EEA/CH, 7 years US), record by record, terminated or not
        ("invoices", "acct_1001"): ALL - PER_AGE,
        ("invoices", "acct_2002"): ALL - PER_AGE,
        ("invoices", "acct_4004"): ALL - PER_AGE,
        ("invoices", "acct_5005"): ALL - PER_AGE,
    }
    assert {key: left[key] for key in expected} == expected
    assert stack.objects("call-recordings", "acct_4004") == recordings_4004 > 0
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
    rows, totals = stack.rows(), Counter({(line.location, line.account_id): line.affected for line in first.lines})
    again = run_sweep(stack, run_id=first.run_id)
    assert stack.rows() == rows
    assert Counter({(line.location, line.account_id): line.affected for line in again.lines}) == totals
    fresh = run_sweep(stack)
    assert fresh.deleted == 0 and fresh.anonymized == 0 and stack.rows() == rows


class HoldAfterFirstBatch:
    """Instrumentation around a real store: places a legal hold on acct_1001 after its first deletion
    (``at``: the hold's placed_at, as a machine with another clock would stamp it; default the ledger's)."""

    def __init__(self, store, ledger_url, at=None):
        self.store, self.ledger_url, self.at = store, ledger_url, at
        self.location_id = store.location_id

    def __getattr__(self, name):
        return getattr(self.store, name)

    def delete(self, batch):
        outcome = self.store.delete(batch)
        self._place_hold()
        return outcome

    def cohort_delete(self, batch):  # the set-based path of SQL locations: many accounts per batch
        outcome = self.store.cohort_delete(batch)
        self._place_hold()
        return outcome

    def _place_hold(self):
        with Ledger.open(self.ledger_url) as ledger:
            if not ledger.list_holds(include_released=True):
                ledger.place_hold(account_id="acct_1001", data_class=None, reason="placed mid-run",
                                  reference="LEGAL-7", placed_by="counsel", at=self.at)


def test_a_hold_placed_mid_run_stops_deletion_before_the_next_batch(stack):
    from retention.stores import open_store

    before = stack.rows()
    report = run_sweep(stack, open_store=lambda loc, spec: HoldAfterFirstBatch(open_store(loc, spec), stack.ledger_url))
    acct = [ln for ln in report.lines if ln.account_id == "acct_1001" and ln.action == "delete"]
    deleted = [ln for ln in acct if ln.affected]
    assert len(deleted) == 1, "only the batch before the hold deleted anything"
    # SQL deletes many accounts per batch: the location of that first batch may hold acct_1001's task with what
    # the batch deleted counted; every other task of it stops with nothing deleted.
    held = [ln for ln in acct if ln.status == "held"]
    assert held and all(ln.affected == 0 for ln in held if ln not in deleted)
    after = stack.rows()
    for ln in held:
        if (ln.location, "acct_1001") in before:
            assert before[(ln.location, "acct_1001")] - after.get((ln.location, "acct_1001"), 0) == ln.affected


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


# --- terminations: the offboarding's, never the sweep's (issue 14, item 6) ----------------------------

def test_a_terminated_account_past_its_grace_period_is_not_deleted_wholesale_by_the_sweep(stack):
    from retention.rules import load_ruleset

    before = stack.rows()
    recordings = stack.objects("call-recordings", "acct_4004")
    report = run_sweep(stack)  # acct_4004 terminated 2026-09-30, elected delete: its 30 days are long over

    assert report.status == "succeeded"
    after = stack.rows()
    for location in ("chat_conversations", "page_views", "app_users", "contacts"):
        assert after[(location, "acct_4004")] == before[(location, "acct_4004")] == ALL, location
    assert stack.objects("call-recordings", "acct_4004") == recordings
    rules = {rule.id: rule for rule in load_ruleset(stack.env["RETENTION_RULES_DIR"]).rules}
    for line in (ln for ln in report.lines if ln.account_id in ("acct_4004", "acct_5005")):
        if rules[line.rule_id].anchor.is_account_event:  # the rules would delete all of it: the sweep keeps it
            assert (line.action, line.affected) == ("keep", 0), line
            assert line.why_kept.startswith("terminated, customer elected") and "offboarding" in line.why_kept
        else:  # what every account loses record by record (e.g. invoices past their statutory period) still goes
            assert line.affected == 0 or line.rule_id.startswith(("billing-records", "email-delivery",
                                                                   "application-logs", "error-reports")), line


# --- mass deletions need an acknowledgement (issue 14, item 8) ---------------------------------------

@pytest.fixture
def ten_day_transcripts(stack, tmp_path, monkeypatch):
    """A rule change (two years -> ten days) that makes most chat transcripts due at once, and a threshold
    low enough for the stack's small tables (the default minimum of 1,000 records would not check them)."""
    import re
    import shutil

    rules = tmp_path / "rules"
    shutil.copytree(stack.env["RETENTION_RULES_DIR"], rules)
    text = (rules / "rules.yaml").read_text()
    changed = re.sub(r"(id: chat-transcripts-in-service\n(?:.*\n){2}    retain_for: )P2Y", r"\1P10D", text)
    assert changed != text
    (rules / "rules.yaml").write_text(changed)
    monkeypatch.setenv("RETENTION_RULES_DIR", str(rules))
    monkeypatch.setenv("RETENTION_MASS_DELETION_MIN_RECORDS", "100")
    return stack


def test_a_rule_change_that_makes_most_of_a_location_due_deletes_nothing_there_without_acknowledgement(
        ten_day_transcripts):
    stack = ten_day_transcripts
    before = stack.rows()
    preview = run_sweep(stack, dry_run=True)  # the plan shows it before anything runs
    flagged = {m["location"]: m for m in preview.mass_deletions}
    assert not flagged["chat_conversations"]["acknowledged"]
    assert flagged["chat_conversations"]["due"] > flagged["chat_conversations"]["total"] // 2
    shown = {m["location"]: m["sentence"] for m in preview.as_dict()["mass_deletion"]}
    assert shown["chat_conversations"].endswith("not acknowledged: a run would delete nothing there")

    report = run_sweep(stack)

    assert report.status == "failed"
    assert "chat_conversations" in {m["location"] for m in report.refused}
    after = stack.rows()
    assert {k: v for k, v in after.items() if k[0] == "chat_conversations"} == \
        {k: v for k, v in before.items() if k[0] == "chat_conversations"}
    refused = [ln for ln in report.lines if ln.location == "chat_conversations"]
    m = flagged["chat_conversations"]
    percent = f"{100 * m['due'] / m['total']:.1f}".removesuffix(".0")
    share = f"{m['due']} of its {m['total']} records ({percent}%) due at once"
    assert all(ln.affected == 0 and ln.why_kept.startswith("mass deletion refused: chat_conversations:")
               and share in ln.why_kept and "more than the 50%" in ln.why_kept
               for ln in refused if ln.rule_id == "chat-transcripts-in-service")
    assert after[("page_views", "acct_1001")] == 5 * PER_AGE  # other locations are swept as usual
    with Ledger.open(stack.ledger_url) as ledger:
        (planned,) = ledger.run_events(report.run_id, "run.planned")
        touched = {e.payload["location"] for e in ledger.run_events(report.run_id, "batch.intent")}
    assert {"location": "chat_conversations", "due": m["due"], "total": m["total"], "acknowledged": False} \
        in planned.payload["mass_deletion"]
    assert planned.payload["mass_deletion_policy"] == {"share": "0.5", "min_records": 100}
    assert "chat_conversations" not in touched  # refused before any delete


def test_with_the_acknowledgement_the_same_change_deletes(ten_day_transcripts):
    from retention.engine import plan_sweep

    stack = ten_day_transcripts
    with Ledger.open(stack.ledger_url) as ledger:
        ctx = SweepContext.load(Settings.from_env(), ledger)
        with pytest.raises(ValueError, match="no location 'chat_conversation'"):
            plan_sweep(ctx, stack.now, dry_run=False, actor="test", acknowledged=["chat_conversation"])
        flagged = [m.location for m in plan_sweep(ctx, stack.now, dry_run=True, actor="test").mass_deletions]
        plan = plan_sweep(ctx, stack.now, dry_run=False, actor="test", acknowledged=flagged)
        report = sweep(ctx, stack.now, dry_run=False, actor="test", run_id=plan.run_id)
    assert "chat_conversations" in flagged and report.status == "succeeded" and not report.refused
    assert all(m["acknowledged"] for m in report.mass_deletions)
    assert stack.rows()[("chat_conversations", "acct_1001")] == PER_AGE  # only the records a day old are left


def test_the_cli_refuses_without_the_flag_names_the_location_and_deletes_with_it(ten_day_transcripts):
    from click.testing import CliRunner

    from retention.cli import main

    stack = ten_day_transcripts
    before = stack.rows()
    at = ["--at", stack.now.isoformat()]
    refused = CliRunner().invoke(main, ["sweep", *at])
    assert refused.exit_code == 1
    assert "mass deletion at chat_conversations:" in refused.output and "%) due at once" in refused.output
    assert "--acknowledge-mass-deletion chat_conversations" in refused.output
    assert stack.rows()[("chat_conversations", "acct_1001")] == before[("chat_conversations", "acct_1001")]

    typo = CliRunner().invoke(main, ["sweep", *at, "--acknowledge-mass-deletion", "chat_conversation"])
    assert typo.exit_code == 1 and "no location 'chat_conversation'" in typo.output

    flagged = [m.split(":")[0] for m in refused.output.split("mass deletion at ")[1:]]
    flags = [arg for location in dict.fromkeys(flagged) for arg in ("--acknowledge-mass-deletion", location)]
    done = CliRunner().invoke(main, ["sweep", *at, *flags])
    assert done.exit_code == 0, done.output
    assert "acknowledged by the run" in done.output
    assert stack.rows()[("chat_conversations", "acct_1001")] == PER_AGE


def test_with_the_default_minimum_a_small_table_is_not_checked(ten_day_transcripts, monkeypatch):
    monkeypatch.delenv("RETENTION_MASS_DELETION_MIN_RECORDS")
    report = run_sweep(ten_day_transcripts)
    assert report.status == "succeeded" and report.mass_deletions == ()
    assert ten_day_transcripts.rows()[("chat_conversations", "acct_1001")] == PER_AGE
