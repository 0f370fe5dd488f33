"""A data subject request through its steps (``retention.requests.tasks``, as the DAG runs them) on the embedded
stack: identity expansion, approval, the engine acting on the person only, deadlines and their alerts, and the
identifiers' own erasure after the appeal window; no identifier in clear in the ledger at any point."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa

from retention import embedded
from retention.engine import tasks as engine_tasks
from retention.engine.executor import NotPermitted
from retention.identifier_hashes import identifier_hash, load_key
from retention.ledger import Ledger
from retention.ledger.subject_requests import IdentifiersErased
from retention.requests import tasks
from retention.requests.decisions import SelfApproval
from retention.requests.housekeeping import alert_lines, deadline_alerts, erase_closed_identifiers
from retention.settings import Settings
from tests.emulators.sendgrid import KEY as SENDGRID_KEY
from tests.emulators.sendgrid import SendGridEmulator
from tests.emulators.twilio import PARENT as TWILIO_PARENT
from tests.emulators.twilio import TOKEN as TWILIO_TOKEN
from tests.emulators.twilio import TwilioEmulator
from tests.fixtures.stack import ACCOUNTS

ACCOUNT = "acct_1001"  # EEA: GDPR
CCPA_ACCOUNT = "acct_2002"  # US-CA
ACTOR = "airflow:subject_request"


@pytest.fixture
def world(stack, tmp_path, monkeypatch):
    monkeypatch.setenv("RETENTION_HOME", str(tmp_path / "home"))
    Ledger.open(stack.ledger_url).close()
    return stack


def params(email: str, account: str = ACCOUNT, received_on: str = "2026-11-20", **extra: object) -> dict:
    return {"account_id": account, "request_type": "erasure", "identifiers": {"email": [email]},
            "reference": "DSR-42", "received_on": received_on, **extra}


def ledger_holds(stack, text: str) -> list[str]:
    """The ledger tables any of whose rows holds ``text`` in any column."""
    engine = sa.create_engine(stack.ledger_url)
    with engine.connect() as conn:
        found = [name for name in sa.inspect(conn).get_table_names()
                 if any(text in str(tuple(row)) for row in conn.execute(sa.text(f'SELECT * FROM "{name}"')))]
    engine.dispose()
    return found


def erase_through_the_steps(stack, email: str, *, filed_by: str = "api:7") -> tuple[str, dict, list[list[str]]]:
    """Run every step as the DAG does; returns (request id, the preview, the ledger tables holding the e-mail after
    each step)."""
    seen = []
    opened = tasks.open_request(params(email), filed_by=filed_by, actor=ACTOR)
    request_id = opened["request_id"]
    seen.append(ledger_holds(stack, email))
    tasks.expand(request_id, actor=ACTOR)
    seen.append(ledger_holds(stack, email))
    preview = tasks.preview(request_id, actor=ACTOR, subprocessors=[])
    seen.append(ledger_holds(stack, email))
    assert tasks.approve_if_small(request_id, actor=ACTOR) is False
    for location in preview["all"]:
        engine_tasks.execute(preview["run_id"], location, actor=ACTOR)
        engine_tasks.verify(preview["run_id"], location, actor=ACTOR)
    seen.append(ledger_holds(stack, email))
    assert tasks.close(request_id, actor=ACTOR)["status"] == "completed"
    seen.append(ledger_holds(stack, email))
    return request_id, preview, seen


def test_expansion_finds_the_linked_visitor_id_and_phone_and_erases_by_them_too(world):
    who = embedded.person(ACCOUNTS, ACCOUNT)
    request_id, preview, seen = erase_through_the_steps(world, who.email)
    # The e-mail (and what it linked to) is kept only in the request's own row while the request needs it.
    assert all(tables in ([], ["subject_requests"]) for tables in seen), seen
    assert ledger_holds(world, who.visitor_id) in ([], ["subject_requests"])
    with Ledger.open(world.ledger_url) as ledger:
        expanded = ledger.request_subject(request_id)
        assert who.visitor_id in expanded.values("visitor_id") and who.phone in expanded.values("phone")
        event = next(e.payload for e in ledger.events() if e.kind == "subject.expanded")
    key = load_key(Settings.from_env())
    assert event["given"] == 1 and event["bounded"] is False and event["by_kind"]["visitor_id"] >= 1
    assert identifier_hash(key, ACCOUNT, "visitor_id", who.visitor_id) in event["added_hashes"]
    assert identifier_hash(key, ACCOUNT, "phone", who.phone) in event["added_hashes"]
    # Locations that keep only a visitor id were found through the link.
    counts = {line["location"]: line["matched"] for line in preview["locations"]}
    assert counts["visitors"] >= 1 and counts["page_views"] >= 1
    engine = sa.create_engine(world.app_url)
    with engine.connect() as conn:
        left = conn.execute(sa.text("SELECT count(*) FROM visitors WHERE account_id = :a AND cookie_id = :v"),
                            {"a": ACCOUNT, "v": who.visitor_id}).scalar_one()
    engine.dispose()
    assert left == 0


def test_identifiers_are_erased_after_the_appeal_window_and_the_hashes_stay(world):
    who = embedded.person(ACCOUNTS, ACCOUNT)
    request_id, _, _ = erase_through_the_steps(world, who.email)
    # Beside it: another person's request still open, and a third closed after it (rejected).
    still_open = tasks.open_request(params("open@example.invalid"), filed_by="api:7", actor=ACTOR)["request_id"]
    later = tasks.open_request(params("later@example.invalid"), filed_by="api:7", actor=ACTOR)["request_id"]
    settings = Settings.from_env()
    window = timedelta(days=settings.subject_appeal_days)
    with Ledger.open(world.ledger_url) as ledger:
        ledger.set_request_status(later, "rejected", actor=ACTOR)
        closed_at, later_closed = ledger.subject_request(request_id).closed_at, ledger.subject_request(later).closed_at
        assert closed_at is not None and later_closed is not None and closed_at < later_closed
        assert erase_closed_identifiers(ledger, settings, closed_at + window, actor=ACTOR) == []  # its last moment
        assert who.email in ledger.request_subject(request_id).values("email")
        assert ledger.closed_with_identifiers(closed_before=later_closed) == [request_id]
        # Past the first one's window: the later one is at the last moment of its own, the open one has none.
        past = later_closed + window
        assert erase_closed_identifiers(ledger, settings, past, actor=ACTOR) == [request_id]
        assert erase_closed_identifiers(ledger, settings, past, actor=ACTOR) == []  # once
        with pytest.raises(IdentifiersErased):
            ledger.request_subject(request_id)
        assert ledger.request_subject(later).values("email") == ("later@example.invalid",)
        assert ledger.request_subject(still_open).values("email") == ("open@example.invalid",)
        assert erase_closed_identifiers(ledger, settings, past + timedelta(seconds=1), actor=ACTOR) == [later]
        assert ledger.closed_with_identifiers(closed_before=past + timedelta(days=3650)) == []  # never the open one
        assert ledger.subject_request(still_open).identifiers is not None
        filed = next(e.payload for e in ledger.events() if e.kind == "subject.filed")
        erased = [e.payload for e in ledger.events() if e.kind == "subject.identifiers_erased"]
        assert ledger.verify().ok
    assert filed["identifier_hashes"] == [identifier_hash(load_key(settings), ACCOUNT, "email", who.email)]
    assert erased == [{"request_id": request_id, "account_id": ACCOUNT}, {"request_id": later, "account_id": ACCOUNT}]
    for value in (who.email, who.visitor_id, who.phone):
        assert ledger_holds(world, value) == []


def test_nothing_is_deleted_before_the_approval_and_the_filer_cannot_approve(world, monkeypatch):
    monkeypatch.setenv("RETENTION_SUBJECT_APPROVAL_RECORDS", "1")
    who = embedded.person(ACCOUNTS, ACCOUNT)
    request_id = tasks.open_request(params(who.email), filed_by="api:7", actor=ACTOR)["request_id"]
    tasks.expand(request_id, actor=ACTOR)
    preview = tasks.preview(request_id, actor=ACTOR, subprocessors=[])
    assert preview["needs_approval"] is True and preview["total"] > 1
    assert "cannot approve it" in tasks.approval_body(preview) and who.email not in tasks.approval_body(preview)
    assert tasks.approve_if_small(request_id, actor=ACTOR) is True
    with pytest.raises(NotPermitted, match="no subject.approved event"):
        engine_tasks.execute(preview["run_id"], "contacts", actor=ACTOR)
    with pytest.raises(SelfApproval, match="cannot approve subject request"):
        tasks.record_decision(request_id, {"chosen_options": ["Approve"], "responded_by_user": {"id": "7"}},
                              actor=ACTOR)
    with Ledger.open(world.ledger_url) as ledger:
        assert ledger.subject_request(request_id).status == "awaiting_approval"
        assert [e.kind for e in ledger.run_events(preview["run_id"], "subject.self_approval_refused",
                                                  "subject.approved")] == ["subject.self_approval_refused"]


def test_deadlines_follow_the_regime_and_the_alert_lists_requests_inside_the_warning_window(world):
    gdpr = tasks.open_request(params("a@example.invalid", received_on="2026-01-31"), filed_by="api:7", actor=ACTOR)
    ccpa = tasks.open_request(params("b@example.invalid", account=CCPA_ACCOUNT, received_on="2026-01-31"),
                              filed_by="api:7", actor=ACTOR)
    later = tasks.open_request(params("c@example.invalid", received_on="2026-03-20"), filed_by="api:7", actor=ACTOR)
    assert gdpr["deadline_at"].startswith("2026-02-28T23:59:59")  # one month (Art. 12(3)), the month's last day
    assert ccpa["deadline_at"].startswith("2026-03-17T23:59:59")  # 45 days (CCPA §1798.130)
    settings = Settings.from_env()
    now = datetime(2026, 2, 25, 12, tzinfo=UTC)
    with Ledger.open(world.ledger_url) as ledger:
        alerts = deadline_alerts(ledger, settings, now)
        lines = alert_lines(ledger, settings, now)
        past = alert_lines(ledger, settings, datetime(2026, 3, 2, tzinfo=UTC))
    assert [a.request_id for a in alerts] == [gdpr["request_id"]]  # the CCPA one has 20 days, the later 54
    assert alerts[0].days_left == 4 and "4 day(s) left" in lines[0] and ACCOUNT in lines[0]
    assert len(past) == 1 and gdpr["request_id"] in past[0] and "PAST its deadline by 1 full day(s)" in past[0]
    assert date.fromisoformat(later["deadline_at"][:10]) == date(2026, 4, 20)
    assert all("@" not in line for line in lines + past)


def test_an_erasure_asks_its_subprocessors_and_closes_only_once_each_answered(world, monkeypatch):
    who = embedded.person(ACCOUNTS, ACCOUNT)
    with SendGridEmulator(pending_polls=1) as sendgrid, TwilioEmulator() as twilio:
        sendgrid.add_tenant(ACCOUNT, contacts=3)
        twilio.add_tenant(ACCOUNT, recordings=1, messages=2)
        sendgrid.add_person(ACCOUNT, who.email)
        twilio.add_person(ACCOUNT, who.phone)
        for conn_id, emulator, secrets in (("sendgrid", sendgrid, {"password": SENDGRID_KEY}),
                                           ("twilio", twilio, {"login": TWILIO_PARENT, "password": TWILIO_TOKEN})):
            host, port = emulator.url.removeprefix("http://").split(":")
            monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(
                {"conn_type": "http", "host": host, "port": int(port), "schema": "http", **secrets}))
        others = sendgrid.remaining(ACCOUNT)["contacts"] - 1, twilio.remaining(ACCOUNT)["messages"] - 2

        def previewed_with_providers(email: str) -> tuple[str, dict]:
            request_id = tasks.open_request(params(email), filed_by="api:7", actor=ACTOR)["request_id"]
            tasks.expand(request_id, actor=ACTOR)  # the phone comes from the contacts row: Twilio finds by it
            preview = tasks.preview(request_id, actor=ACTOR, subprocessors=["sendgrid", "twilio"])
            assert tasks.approve_if_small(request_id, actor=ACTOR) is False
            for location in preview["all"]:
                engine_tasks.execute(preview["run_id"], location, actor=ACTOR)
                engine_tasks.verify(preview["run_id"], location, actor=ACTOR)
            return request_id, preview

        request_id, preview = previewed_with_providers(who.email)
        assert preview["subprocessors"] == ["sendgrid", "twilio"]
        assert {p["subprocessor"]: p["scope"] for p in preview["at_subprocessors"]} == {"sendgrid": "api",
                                                                                          "twilio": "api"}
        for name in preview["subprocessors"]:
            tasks.at_subprocessor(request_id, name, actor=ACTOR)
        with pytest.raises(ValueError, match="does not cover"):
            tasks.at_subprocessor(request_id, "salesforce", actor=ACTOR)
        assert tasks.close(request_id, actor=ACTOR)["status"] == "completed"
        with Ledger.open(world.ledger_url) as ledger:  # each answer in the request's run, where close read it
            answered = ledger.request_events(request_id, "subject.subprocessor")
        assert [(e.payload["subprocessor"], e.run_id) for e in answered] == [
            ("sendgrid", preview["run_id"]), ("twilio", preview["run_id"])]
        assert sendgrid.person_remaining(ACCOUNT, who.email)["contacts"] == 0
        assert twilio.person_remaining(ACCOUNT, who.phone) == {"messages": 0}
        assert (sendgrid.remaining(ACCOUNT)["contacts"], twilio.remaining(ACCOUNT)["messages"]) == others

        # A provider holding the person that was never asked: the request fails, it is not "completed".
        second = embedded.person(ACCOUNTS, ACCOUNT, n=1)
        twilio.add_person(ACCOUNT, second.phone)
        sendgrid.add_person(ACCOUNT, second.email)
        request_id, preview = previewed_with_providers(second.email)
        tasks.at_subprocessor(request_id, "sendgrid", actor=ACTOR)
        assert tasks.close(request_id, actor=ACTOR)["status"] == "failed"
        assert twilio.person_remaining(ACCOUNT, second.phone) == {"messages": 2}
    assert ledger_holds(world, who.email) == ["subject_requests"] and ledger_holds(world, who.phone) == \
        ["subject_requests"]
