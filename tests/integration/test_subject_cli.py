"""`retention request` on the embedded stack: one person of one demo customer erased through the command line,
everybody else untouched, what the law keeps listed, a hold stopping it, nothing found answered with evidence."""

from __future__ import annotations

import json
from typing import Any

import pyrage
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from retention import embedded
from retention.certificates import KeySet, rotate, verify_file
from retention.cli import main
from retention.ledger import Ledger
from retention.rules import load_ruleset
from retention.rules.inventory import load_inventory
from tests.fixtures.stack import ACCOUNTS, REPO

ACCOUNT, OTHER = "acct_1001", "acct_2002"
Rows = dict[str, dict[int, dict[str, Any]]]


@pytest.fixture
def cli(stack, tmp_path, monkeypatch):
    home = tmp_path / "home"
    for key, value in {"RETENTION_HOME": str(home), "RETENTION_SIGNING_KEY_FILE": str(home / "keys" / "signing.pem"),
                       "RETENTION_JWKS_FILE": str(home / "keys" / "jwks.json"),
                       "RETENTION_PROCESSOR_NAME": "Demo Processor Inc."}.items():
        monkeypatch.setenv(key, value)
    rotate(home / "keys" / "signing.pem", home / "keys" / "jwks.json")
    runner = CliRunner()

    def invoke(*args: str, code: int = 0) -> Any:
        result = runner.invoke(main, list(args), catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result

    invoke.stack, invoke.home = stack, home  # type: ignore[attr-defined]
    return invoke


def snapshot(app_url: str) -> Rows:
    """Every row of every application table (the vault's too), by table and id."""
    engine = sa.create_engine(app_url)
    with engine.connect() as conn:
        rows = {f"{t.schema}.{t.name}" if t.schema else t.name:
                {r["id"]: dict(r) for r in conn.execute(sa.select(t)).mappings()}
                for t in embedded.APP.tables.values() if "id" in t.c}
    engine.dispose()
    return rows


def persons_rows(rows: Rows, account: str, who: embedded.Person) -> dict[str, set[int]]:
    """table -> ids of the rows of ``who`` in ``account`` (children of their conversations included)."""
    values = {who.email, who.visitor_id, who.phone}
    mine = {name: {i for i, r in table.items() if r.get("account_id") == account
                   and any(r.get(c) in values for c in embedded.SUBJECT_COLUMNS.get(name.split(".")[-1], ()))}
            for name, table in rows.items()}
    mine["chat_messages"] = {i for i, r in rows["chat_messages"].items()
                             if r["conversation_id"] in mine["chat_conversations"]}
    return mine


def attachment_keys(stack) -> set[str]:
    client = embedded.s3_client(stack.endpoint)
    pages = client.get_paginator("list_objects_v2").paginate(Bucket="chat-attachments")
    return {obj["Key"] for page in pages for obj in page.get("Contents", [])}


def add_same_email_elsewhere(app_url: str, email: str) -> None:
    """The same address at another customer: a different person in law, never touched by this account's request."""
    engine = sa.create_engine(app_url)
    with engine.begin() as conn:
        conn.execute(embedded.APP.tables["contacts"].insert().values(account_id=OTHER, email=email, phone=None))
    engine.dispose()


def file(cli, email: str, *extra: str) -> str:
    out = cli("request", "file", "--account", ACCOUNT, "--type", "erasure", "--email", email, "--reference",
              "DSR-1001-7", "--received-on", "2026-11-20", *extra, "--json")
    return str(json.loads(out.output)["request"]["request_id"])


def test_an_erasure_of_one_email_leaves_none_of_the_person_and_touches_nobody_else(cli):
    stack = cli.stack
    who = embedded.person(ACCOUNTS, ACCOUNT)
    add_same_email_elsewhere(stack.app_url, who.email)
    before, objects = snapshot(stack.app_url), attachment_keys(stack)
    mine = persons_rows(before, ACCOUNT, who)
    theirs = {key for key in objects if key.split("/")[1] == ACCOUNT and key.split("/")[4] == who.visitor_id}
    assert theirs and mine["chat_conversations"] and mine["chat_messages"] and mine["invoices"] and mine["app_users"]
    request_id = file(cli, who.email.upper())  # matched however the customer typed it

    result = cli("request", "run", request_id, "--no-subprocessors")
    assert who.email not in result.output and who.visitor_id not in result.output
    assert f"request {request_id} completed" in result.output
    assert "kept under law" in result.output and "invoices" in result.output
    after = snapshot(stack.app_url)
    anonymized = {"app_users": {"email", "full_name", "last_login_ip"}}
    kept = {"invoices"}
    for table, rows in before.items():
        for row_id, row in rows.items():
            if row_id not in mine.get(table, set()) or table in kept:
                assert after[table].get(row_id) == row, f"{table} {row_id} changed"
            elif table in anonymized:
                changed = {c for c in row if after[table][row_id][c] != row[c]}
                assert changed and changed <= anonymized[table], (table, changed)
                assert who.email not in after[table][row_id].values()
            else:
                assert row_id not in after[table], f"{table} {row_id} of the person is still there"
    assert any(r["email"] == who.email and r["account_id"] == OTHER for r in after["contacts"].values())
    assert attachment_keys(stack) == objects - theirs  # the person's attachments (found by their visitor id) only
    values = {who.email, who.visitor_id, who.phone}
    for table, rows in after.items():
        columns = embedded.SUBJECT_COLUMNS.get(table.split(".")[-1], ())
        left = [i for i, r in rows.items() if r.get("account_id") == ACCOUNT and {r.get(c) for c in columns} & values]
        assert left == (sorted(mine[table]) if table in kept else []), table

    shown = json.loads(cli("request", "show", request_id, "--json").output)["request"]
    assert shown["status"] == "completed"
    tasks = {t["location"]: t for t in shown["tasks"]}
    assert tasks["invoices"]["action"] == "keep" and tasks["invoices"]["why_kept"].startswith("kept under law: ")
    assert tasks["chat_conversations"]["status"] == "verified" and tasks["app_users"]["action"] == "anonymize"
    with Ledger.open(stack.ledger_url) as ledger:
        certified = [e for e in ledger.events() if e.kind == "subject.certified"]
        assert ledger.verify().ok
    assert len(certified) == 1 and certified[0].payload["request_id"] == request_id
    pdf = cli.home / "certificates" / f"{certified[0].payload['certificate_id']}.pdf"
    keys = KeySet.read(cli.home / "keys" / "jwks.json")
    verified = verify_file(pdf.read_bytes(), keys).certificate
    assert verified["certificate_id"] == certified[0].payload["certificate_id"]
    assert who.email not in json.dumps(verified)
    assert _only_in_request_row(stack, who.email)  # never in an event, a task or a text


def _only_in_request_row(stack, email: str) -> bool:
    """While the request is within its appeal window its identifiers stay in subject_requests (and nowhere
    else): the text appears only in that table."""
    engine = sa.create_engine(stack.ledger_url)
    with engine.connect() as conn:
        others = [name for name in sa.inspect(conn).get_table_names() if name != "subject_requests"
                  and any(email in str(tuple(row)) for row in conn.execute(sa.text(f'SELECT * FROM "{name}"')))]
    engine.dispose()
    return not others


def test_a_hold_on_the_account_stops_the_request_before_it_deletes_anything(cli):
    stack = cli.stack
    who = embedded.person(ACCOUNTS, ACCOUNT)
    cli("hold", "place", "--account", ACCOUNT, "--reason", "litigation", "--reference", "LIT-9")
    before = snapshot(stack.app_url)
    request_id = file(cli, who.email)

    result = cli("request", "run", request_id, "--no-subprocessors")
    assert f"request {request_id} held" in result.output
    assert snapshot(stack.app_url) == before
    shown = json.loads(cli("request", "show", request_id, "--json").output)["request"]
    assert shown["status"] == "held"
    assert all(t["why_kept"].startswith("legal hold ") for t in shown["tasks"])


def test_identifiers_that_match_nothing_answer_nothing_found_with_evidence(cli):
    request_id = file(cli, "nobody-here@example.invalid")
    result = cli("request", "run", request_id, "--no-subprocessors")
    assert f"request {request_id} nothing found" in result.output
    with Ledger.open(cli.stack.ledger_url) as ledger:
        found = [e.payload for e in ledger.events() if e.kind == "subject.nothing_found"]
    keeping_email = [loc for loc, spec in load_inventory(REPO / "retention_rules" / "systems.yaml",
                                                         load_ruleset(REPO / "retention_rules")).locations.items()
                     if "email" in spec.subject_kinds()]
    assert len(keeping_email) >= 6
    assert found == [{"request_id": request_id, "locations_checked": len(keeping_email), "subprocessors_checked": 0}]


def test_list_shows_requests_without_identifiers_and_file_refuses_a_bad_one(cli):
    who = embedded.person(ACCOUNTS, ACCOUNT)
    request_id = file(cli, who.email)
    listed = cli("request", "list", "--open")
    assert request_id in listed.output and who.email not in listed.output
    refused = cli("request", "file", "--account", ACCOUNT, "--type", "erasure", "--email", "not-an-address",
                  "--reference", "DSR-1", "--received-on", "2026-11-20", code=1)
    assert "email" in refused.output and "not-an-address" not in refused.output


def test_a_large_request_stops_for_a_second_persons_approval(cli, monkeypatch):
    monkeypatch.setenv("RETENTION_SUBJECT_APPROVAL_RECORDS", "1")
    before = snapshot(cli.stack.app_url)
    request_id = file(cli, embedded.person(ACCOUNTS, ACCOUNT).email)
    result = cli("request", "run", request_id, "--no-subprocessors")
    assert "needs a second person's approval" in result.output and "nothing was deleted" in result.output
    assert snapshot(cli.stack.app_url) == before
    assert json.loads(cli("request", "show", request_id, "--json").output)["request"]["status"] == \
        "awaiting_approval"


def test_an_access_request_delivers_a_package_of_the_persons_records_and_deletes_nothing(cli):
    stack = cli.stack
    who = embedded.person(ACCOUNTS, ACCOUNT)
    recipient = str(pyrage.x25519.Identity.generate().to_public())
    before = snapshot(stack.app_url)
    out = cli("request", "file", "--account", ACCOUNT, "--type", "access", "--email", who.email, "--reference",
              "DSR-1001-8", "--received-on", "2026-11-20", "--recipient", recipient, "--json")
    request_id = json.loads(out.output)["request"]["request_id"]

    result = cli("request", "run", request_id, "--no-subprocessors")  # encrypted to the key it was filed with
    assert f"request {request_id} completed" in result.output and "package dsr-" in result.output
    assert "to export" in result.output and who.email not in result.output
    assert snapshot(stack.app_url) == before
    with Ledger.open(stack.ledger_url) as ledger:
        exported = [e.payload for e in ledger.events() if e.kind == "subject.exported"]
    mine = persons_rows(before, ACCOUNT, who)
    assert len(exported) == 1 and exported[0]["records"] >= sum(len(ids) for ids in mine.values()) - \
        len(mine["chat_messages"])
