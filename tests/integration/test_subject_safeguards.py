"""Safeguards of a data subject request found in review: an expansion through an identifier another person shares
stops for a person's approval and never adds that person's address; the staff member who filed through the CLI
cannot approve in Airflow; an answer to an earlier preview approves nothing; a held request stays open and runs
again; erasing a request's identifiers clears its tasks' cursors; the deadline of a Swiss account; a day of receipt
in the future; a subject column that is not text."""

from __future__ import annotations

from datetime import date

import pytest
import sqlalchemy as sa

from retention import embedded
from retention.engine import tasks as engine_tasks
from retention.ledger import Ledger
from retention.ledger.models import PlannedTask
from retention.requests import tasks
from retention.requests.decisions import SelfApproval, StaleApproval
from retention.requests.request import RequestError, parse_subject_request
from retention.rules.subjects import deadline
from retention.settings import Settings
from retention.stores.sql.subjects import check_lookups
from tests.fixtures.stack import ACCOUNTS

ACCOUNT = "acct_1001"
ACTOR = "airflow:subject_request"
APPROVER = {"id": "bob", "name": "bob"}  # an op of AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS below


@pytest.fixture
def world(stack, tmp_path, monkeypatch):
    monkeypatch.setenv("RETENTION_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "alice:op,bob:op")
    Ledger.open(stack.ledger_url).close()
    return stack


def _file(email: str, *, filed_by: str = "api:7") -> str:
    request_id: str = tasks.open_request(
        {"account_id": ACCOUNT, "request_type": "erasure", "identifiers": {"email": [email]}, "reference": "DSR-7",
         "received_on": "2026-11-20"}, filed_by=filed_by, actor=ACTOR)["request_id"]
    return request_id


def _answer(request_id: str, user: dict[str, str], run_id: str | None) -> None:
    tasks.record_decision(request_id, {"chosen_options": ["Approve"], "responded_by_user": user}, actor=ACTOR,
                          run_id=run_id)


def test_an_identifier_shared_with_another_address_makes_the_expansion_ambiguous_and_needs_a_person(world):
    who = embedded.person(ACCOUNTS, ACCOUNT, n=1)
    other = "someone-else@example.invalid"
    engine = sa.create_engine(world.app_url)
    with engine.begin() as conn:  # a kiosk: another address wrote from the same browser (visitor id)
        conn.execute(sa.text("INSERT INTO chat_conversations (account_id, created_at, last_message_at, visitor_email,"
                             " visitor_id) VALUES (:a, now(), now(), :e, :v)"),
                     {"a": ACCOUNT, "e": other, "v": who.visitor_id})
    engine.dispose()
    request_id = _file(who.email)
    expanded = tasks.expand(request_id, actor=ACTOR)
    with Ledger.open(world.ledger_url) as ledger:
        subject = ledger.request_subject(request_id)
    assert subject.values("email") == (who.email,) and who.visitor_id in subject.values("visitor_id")
    assert expanded["expanded"] == subject.size
    preview = tasks.preview(request_id, actor=ACTOR, subprocessors=[])
    assert preview["ambiguous"] is True and preview["needs_approval"] is True
    assert preview["total"] < Settings.from_env().subject_approval_records  # small, yet a person must look
    body = tasks.approval_body(preview)
    assert "ambiguous" in body and other not in body and who.email not in body
    assert tasks.approve_if_small(request_id, actor=ACTOR) is True


def test_the_staff_member_who_filed_through_the_cli_cannot_approve_it_in_airflow(world, monkeypatch):
    monkeypatch.setenv("RETENTION_SUBJECT_APPROVAL_RECORDS", "1")
    request_id = _file(embedded.person(ACCOUNTS, ACCOUNT, n=2).email, filed_by="cli:alice")
    tasks.expand(request_id, actor=ACTOR)
    preview = tasks.preview(request_id, actor=ACTOR, subprocessors=[])
    assert tasks.approve_if_small(request_id, actor=ACTOR) is True
    with pytest.raises(SelfApproval):
        _answer(request_id, {"id": "alice", "name": "alice"}, preview["run_id"])
    _answer(request_id, APPROVER, preview["run_id"])  # another person may
    with Ledger.open(world.ledger_url) as ledger:
        assert ledger.subject_request(request_id).status == "running"


def test_an_answer_to_an_earlier_preview_approves_nothing(world, monkeypatch):
    monkeypatch.setenv("RETENTION_SUBJECT_APPROVAL_RECORDS", "1")
    request_id = _file(embedded.person(ACCOUNTS, ACCOUNT, n=0, age=20).email)
    tasks.expand(request_id, actor=ACTOR)
    first = tasks.preview(request_id, actor=ACTOR, subprocessors=[])
    tasks.approve_if_small(request_id, actor=ACTOR)
    tasks.expand(request_id, actor=ACTOR)  # another run takes the request over and previews it again
    second = tasks.preview(request_id, actor=ACTOR, subprocessors=[])
    tasks.approve_if_small(request_id, actor=ACTOR)
    with pytest.raises(StaleApproval):
        _answer(request_id, APPROVER, first["run_id"])
    with Ledger.open(world.ledger_url) as ledger:
        assert ledger.subject_request(request_id).status == "awaiting_approval"
        assert not ledger.run_events(second["run_id"], "subject.approved")
        assert ledger.run_events(second["run_id"], "subject.approval_stale")


def test_a_held_request_stays_open_and_runs_again_once_the_hold_is_released(world):
    who = embedded.person(ACCOUNTS, ACCOUNT, n=1, age=20)
    with Ledger.open(world.ledger_url) as ledger:
        hold = ledger.place_hold(account_id=ACCOUNT, data_class=None, reason="Litigation", reference="LEGAL-9",
                                 placed_by="counsel.1")
    request_id = _file(who.email)
    tasks.expand(request_id, actor=ACTOR)
    held = tasks.preview(request_id, actor=ACTOR, subprocessors=[])
    assert tasks.approve_if_small(request_id, actor=ACTOR) is False
    assert tasks.close(request_id, actor=ACTOR)["status"] == "held"
    with Ledger.open(world.ledger_url) as ledger:
        assert request_id in {r.id for r in ledger.subject_requests(open_only=True)}  # alerts go on
        ledger.release_hold(hold.id, reason="Case closed", released_by="counsel.1")
    tasks.open_request({"request_id": request_id}, filed_by="api:8", actor=ACTOR)
    tasks.expand(request_id, actor=ACTOR)
    again = tasks.preview(request_id, actor=ACTOR, subprocessors=[])
    assert again["run_id"] != held["run_id"] and again["all"]
    assert tasks.approve_if_small(request_id, actor=ACTOR) is False
    for location in again["all"]:
        engine_tasks.execute(again["run_id"], location, actor=ACTOR)
        engine_tasks.verify(again["run_id"], location, actor=ACTOR)
    assert tasks.close(request_id, actor=ACTOR)["status"] == "completed"


def test_erasing_the_identifiers_clears_the_cursors_of_the_requests_tasks(world):
    request_id = _file(embedded.person(ACCOUNTS, ACCOUNT, n=2, age=20).email)
    tasks.expand(request_id, actor=ACTOR)
    preview = tasks.preview(request_id, actor=ACTOR, subprocessors=[])
    tasks.approve_if_small(request_id, actor=ACTOR)
    for location in preview["all"]:
        engine_tasks.execute(preview["run_id"], location, actor=ACTOR)
        engine_tasks.verify(preview["run_id"], location, actor=ACTOR)
    tasks.close(request_id, actor=ACTOR)
    engine = sa.create_engine(world.ledger_url)
    with engine.begin() as conn:  # as a held or interrupted task leaves it: an S3 cursor names a key
        conn.execute(sa.update(PlannedTask).where(PlannedTask.run_id == preview["run_id"])
                     .values(checkpoint={"after": "tenants/acct_1001/attachments/2026-11-01/v-123/file-0.png"}))
    with Ledger.open(world.ledger_url) as ledger:
        ledger.erase_request_identifiers(request_id, actor="cli:ops")
        assert all(t.checkpoint is None for t in ledger.tasks(preview["run_id"]))
    engine.dispose()


def test_a_swiss_request_is_due_in_30_days_and_a_future_day_of_receipt_is_refused():
    assert deadline(date(2026, 1, 1), "fadp") == date(2026, 1, 31)
    assert deadline(date(2026, 1, 1), "gdpr") == date(2026, 2, 1)
    with pytest.raises(RequestError, match="received_on: .*future"):
        parse_subject_request({"account_id": ACCOUNT, "request_type": "erasure", "identifiers": {"email": ["a@b.cd"]},
                               "reference": "DSR-1", "received_on": "2062-01-01"})


def test_a_subject_column_that_is_not_text_is_refused_before_any_lookup(world):
    from retention.rules.inventory import SqlLocation
    from retention.stores.base import SubjectLookupError
    from retention.stores.sql.schema import LocationSchema

    engine = sa.create_engine(world.app_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE IF NOT EXISTS typed_users (id bigint PRIMARY KEY, account_id text, "
                             "created_at timestamptz, user_ref bigint)"))
        conn.execute(sa.text("CREATE INDEX IF NOT EXISTS typed_users_user_ref ON typed_users (user_ref)"))
    spec = SqlLocation.model_validate({
        "kind": "sql", "data_class": "user_accounts", "conn_id": "app_db", "table": "typed_users",
        "account_column": "account_id", "timestamps": {"created_at": "created_at"},
        "subjects": {"user_id": {"column": "user_ref", "index": "typed_users_user_ref"}}})
    with pytest.raises(SubjectLookupError, match="not text"):
        check_lookups(engine, LocationSchema("typed_users", spec, engine), spec)
    engine.dispose()
