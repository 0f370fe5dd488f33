"""The subject_request DAG end to end through dag.test() on the embedded stack: real PostgreSQL, the local S3
endpoint, the SendGrid emulator over loopback HTTP, a real signing key; each run is triggered by an Airflow user
(``retention.triggered.run_as``), a large request's approval is answered from another thread as a
SimpleAuthManager user through Airflow's HITL API function. The person is one seeded person of one demo customer
(``embedded.person``): their e-mail, the visitor id on their chats, page views and attachment keys, their phone."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import urllib.request
from pathlib import Path

import pendulum
import pyrage
import pytest
import sqlalchemy as sa

from retention import embedded
from retention.certificates import KeySet, rotate, verify_file
from retention.ledger import Ledger
from retention.triggered import run_as
from tests.dags.test_subprocessor_erasure import answer_when_asked
from tests.emulators.sendgrid import KEY, SendGridEmulator
from tests.fixtures.stack import ACCOUNTS

DAGS = Path(__file__).resolve().parents[2] / "dags"
ACCOUNT, OTHER = "acct_1001", "acct_2002"  # acct_1001 is EEA: its invoices are kept ten years under §147 AO
PERSON = embedded.person(ACCOUNTS, ACCOUNT)
IDENTIFIERS = (PERSON.email, PERSON.visitor_id, PERSON.phone)
CONTACTS = 5  # the SendGrid tenant's other contacts
KEPT_UNDER_LAW = {"invoices", "retention_vault.invoices"}  # tables whose rows of the person the law keeps
# SimpleAuthManager users: alice files; dpo-7 (op) approves.
USERS = "alice:op,dpo-7:op"


@pytest.fixture(scope="module")
def request_dag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    return bag.dags["subject_request"]


@pytest.fixture
def world(stack, tmp_path, monkeypatch):
    """The stack plus what a request needs: a signing key, the SendGrid emulator holding the person's contact in
    the account's tenant and the same address in another account's tenant."""
    home = tmp_path / "home"
    with SendGridEmulator(pending_polls=1) as sendgrid:
        for account in (ACCOUNT, OTHER):
            sendgrid.add_tenant(account, contacts=CONTACTS)
            sendgrid.add_person(account, PERSON.email)
        host, port = sendgrid.url.removeprefix("http://").split(":")
        env = {"RETENTION_HOME": str(home), "RETENTION_SIGNING_KEY_FILE": str(home / "keys" / "signing.pem"),
               "RETENTION_JWKS_FILE": str(home / "keys" / "jwks.json"),
               "RETENTION_PROCESSOR_NAME": "Demo Processor Inc.", "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": USERS,
               "AIRFLOW_CONN_SENDGRID": json.dumps({"conn_type": "http", "host": host, "port": int(port),
                                                    "schema": "http", "password": KEY})}
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        rotate(home / "keys" / "signing.pem", home / "keys" / "jwks.json")
        Ledger.open(stack.ledger_url).close()
        yield {"stack": stack, "home": home, "sendgrid": sendgrid}


def conf(**overrides) -> dict:
    """Every Param, given: dag.test() runs the tasks in this process, where a run's conf stays in the DAG's Params
    for the next run of the same DAG object (a key left out would keep the previous test's value)."""
    return {"request_id": None, "account_id": ACCOUNT, "request_type": "erasure",
            "identifiers": {"email": [PERSON.email.upper()]}, "reference": "DSR-1001",
            "received_on": pendulum.today("UTC").to_date_string(), "regime": None, "recipient": None,
            "subprocessors": ["sendgrid"], **overrides}


def states(run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


# -- what the stack holds ------------------------------------------------------------------------------------


def rows(stack) -> dict[str, dict[tuple, str]]:
    """table -> primary key -> the md5 of the whole row, for every table of the demo schema."""
    engine = sa.create_engine(stack.app_url)
    found: dict[str, dict[tuple, str]] = {}
    with engine.connect() as conn:
        for name, table in embedded.APP.tables.items():
            keys = list(table.primary_key.columns)
            found[name] = {tuple(row._mapping[c.name] for c in keys):
                           hashlib.md5(repr(sorted(row._mapping.items())).encode()).hexdigest()
                           for row in conn.execute(sa.select(table))}
    engine.dispose()
    return found


def persons_rows(stack) -> dict[str, set[tuple]]:
    """table -> the keys of the rows that hold one of the person's identifiers, and the messages of their chats."""
    engine = sa.create_engine(stack.app_url)
    found: dict[str, set[tuple]] = {}
    with engine.connect() as conn:
        for name, table in embedded.APP.tables.items():
            keys = list(table.primary_key.columns)
            text_columns = [c for c in table.c if isinstance(c.type, sa.String)]
            if not text_columns:
                continue
            query = sa.select(*keys).where(sa.or_(*(c.in_(IDENTIFIERS) for c in text_columns)))
            found[name] = {tuple(r) for r in conn.execute(query)}
        chats = [key[0] for key in found["chat_conversations"]]
        messages = embedded.APP.tables["chat_messages"]
        found["chat_messages"] = {tuple(r) for r in conn.execute(
            sa.select(messages.c.id).where(messages.c.conversation_id.in_(chats)))}
    engine.dispose()
    return {table: keys for table, keys in found.items() if keys}


def objects(stack) -> set[tuple[str, str, str]]:
    """(bucket, key, version) of every object version and delete marker of every tenant."""
    client = embedded.s3_client(stack.endpoint)
    found = set()
    for bucket in ("chat-attachments", "call-recordings"):
        for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix="tenants/"):
            found |= {(bucket, v["Key"], v["VersionId"]) for v in [*page.get("Versions", ()),
                                                                      *page.get("DeleteMarkers", ())]}
    return found


def persons_objects(found: set[tuple[str, str, str]]) -> set[tuple[str, str, str]]:
    return {entry for entry in found if f"/{PERSON.visitor_id}/" in entry[1]}


def ledger_events(stack) -> list:
    with Ledger.open(stack.ledger_url) as ledger:
        assert ledger.verify().ok
        return list(ledger.events())


def request_row(stack):
    with Ledger.open(stack.ledger_url) as ledger:
        (row,) = ledger.subject_requests()
        return row


def certificates(world) -> list[dict]:
    """Every certificate in the archive, each verified offline as the customer would (its JSON and its PDF)."""
    keys = KeySet.read(world["home"] / "keys" / "jwks.json")
    directory = world["home"] / "certificates"
    found = []
    for pdf in sorted(directory.glob("cert-*.pdf")):
        certificate = verify_file(pdf.read_bytes(), keys).certificate
        assert verify_file(pdf.with_suffix(".json").read_bytes(), keys).certificate == certificate
        assert PERSON.email not in pdf.with_suffix(".json").read_text()
        found.append(certificate)
    return found


def assert_no_identifier_in_the_ledger(stack) -> None:
    text = json.dumps([e.payload for e in ledger_events(stack)])
    assert all(value not in text for value in IDENTIFIERS)


# -- the requests --------------------------------------------------------------------------------------------


def test_an_erasure_leaves_nothing_of_the_person_touches_nobody_else_and_certifies(request_dag, world) -> None:
    stack, sendgrid = world["stack"], world["sendgrid"]
    before, theirs, stored = rows(stack), persons_rows(stack), objects(stack)
    assert {"chat_conversations", "chat_messages", "contacts", "page_views", "visitors", "invoices"} <= set(theirs)
    assert persons_objects(stored)  # their chat attachments

    run = run_as(request_dag, "alice", run_conf=conf())

    assert str(run.state) == "success", states(run)
    assert states(run)["approve"] == "skipped"  # below RETENTION_SUBJECT_APPROVAL_RECORDS: nobody else asked
    after, left = rows(stack), persons_rows(stack)
    assert set(left) <= KEPT_UNDER_LAW and left.get("invoices") == theirs["invoices"]
    for table, keyed in before.items():  # everybody else's rows are there, unchanged
        others = {key: digest for key, digest in keyed.items() if key not in theirs.get(table, set())}
        assert {key: after[table].get(key) for key in others} == others, table
    assert objects(stack) == stored - persons_objects(stored)
    assert sendgrid.person_remaining(ACCOUNT, PERSON.email)["contacts"] == 0
    assert sendgrid.remaining(ACCOUNT)["contacts"] == CONTACTS
    assert sendgrid.person_remaining(OTHER, PERSON.email)["contacts"] == 1  # the same address, another customer

    assert request_row(stack).status == "completed"
    (certificate,) = certificates(world)
    assert certificate["kind"] == "subject_erasure" and certificate["status"] == "complete"
    assert certificate["account_id"] == ACCOUNT
    assert "invoices" in {line["location"] for line in certificate["kept_under_law"]}
    assert "§147 AO" in json.dumps(certificate["kept_under_law"], ensure_ascii=False)
    assert [s["subprocessor"] for s in certificate["subprocessors"]] == ["sendgrid"]
    assert_no_identifier_in_the_ledger(stack)


def test_an_access_request_delivers_a_package_that_matches_its_manifest_and_holds_only_the_person(
        request_dag, world) -> None:
    stack, identity = world["stack"], pyrage.x25519.Identity.generate()
    before, stored = rows(stack), objects(stack)

    run = run_as(request_dag, "alice", run_conf=conf(request_type="access", recipient=str(identity.to_public())))

    assert str(run.state) == "success", states(run)
    assert states(run)["execute_sql"] == "skipped" and states(run)["certify"] == "skipped"
    assert rows(stack) == before and objects(stack) == stored  # an access request deletes nothing
    delivered = xcom(run, "package")
    with urllib.request.urlopen(delivered["url"]) as response:
        files = untar(pyrage.decrypt(response.read(), [identity]), delivered["package_id"])
    manifest = json.loads(files["manifest.json"])
    assert hashlib.sha256(files["manifest.json"]).hexdigest() == delivered["manifest_sha256"]
    assert sorted(files) == sorted(["manifest.json", *(entry["path"] for entry in manifest["files"])])
    for entry in manifest["files"]:
        assert hashlib.sha256(files[entry["path"]]).hexdigest() == entry["sha256"]
    contacts = [json.loads(line) for line in files["contacts/contacts.jsonl"].splitlines()]
    assert contacts and {c["email"] for c in contacts} == {PERSON.email} and {c["account_id"] for c in contacts} \
        == {ACCOUNT}
    chats = [json.loads(line) for line in files["chat_conversations/chat_conversations.jsonl"].splitlines()]
    assert chats and all(PERSON.visitor_id == c["visitor_id"] for c in chats)
    attachments = [path for path in files if path.startswith("chat_attachments/")]
    assert attachments and all(f"/{PERSON.visitor_id}/" in path for path in attachments)
    assert manifest["records"]["chat_attachments"] == len(attachments)
    at_sendgrid = b"".join(data for path, data in files.items() if path.startswith("subprocessors/sendgrid/"))
    assert manifest["records"]["subprocessors/sendgrid"] >= 1 and PERSON.email.encode() in at_sendgrid
    assert f".{ACCOUNT}@".encode() not in at_sendgrid  # none of the tenant's other contacts

    assert request_row(stack).status == "completed"
    exported = [e.payload for e in ledger_events(stack) if e.kind == "subject.exported"]
    assert [(e["package_id"], e["manifest_sha256"]) for e in exported] == [(delivered["package_id"],
                                                                            delivered["manifest_sha256"])]
    assert_no_identifier_in_the_ledger(stack)


def test_a_filed_access_request_runs_by_its_id_and_its_package_is_deleted_once_its_link_expired(request_dag,
                                                                                                world) -> None:
    """Filed as the customer API files it (the key and identifiers in the ledger), run by its id alone; the
    package goes once its link expired, not while a hold on the account is in force."""
    from retention.requests import tasks
    from retention.requests.access import LINK_DAYS, remove_expired

    stack, identity = world["stack"], pyrage.x25519.Identity.generate()
    filed = tasks.open_request({k: v for k, v in conf(request_type="access", recipient=str(identity.to_public()))
                                .items() if k != "subprocessors"}, filed_by="customer:c-1", actor="test")
    run = run_as(request_dag, "alice", run_conf=conf(request_id=filed["request_id"], account_id=None,
                                                     request_type=None, identifiers=None, reference=None,
                                                     received_on=None))
    assert str(run.state) == "success", states(run)
    assert (request_row(stack).filed_by, request_row(stack).status) == ("customer:c-1", "completed")
    with urllib.request.urlopen(xcom(run, "package")["url"]) as response:
        assert pyrage.decrypt(response.read(), [identity])  # encrypted to the key the request was filed with
    package_id, client = xcom(run, "package")["package_id"], embedded.s3_client(stack.endpoint)
    packages = {"Bucket": "retention-returns", "Prefix": f"access/{ACCOUNT}/"}
    expired = pendulum.now("UTC").add(days=LINK_DAYS, hours=1)

    with Ledger.open(stack.ledger_url) as ledger:
        assert remove_expired(ledger, client=client, bucket="retention-returns", now=pendulum.now("UTC"),
                              actor="test") == []  # the link still works
        hold = ledger.place_hold(account_id=ACCOUNT, data_class=None, reason="litigation", reference="LEGAL-8",
                                 placed_by="legal-1")
        assert remove_expired(ledger, client=client, bucket="retention-returns", now=expired, actor="test") == []
        assert len(client.list_objects_v2(**packages).get("Contents", [])) == 1
        ledger.release_hold(hold.id, released_by="legal-1", reason="settled")
        assert remove_expired(ledger, client=client, bucket="retention-returns", now=expired,
                              actor="test") == [package_id]
        assert remove_expired(ledger, client=client, bucket="retention-returns", now=expired, actor="test") == []
    assert client.list_objects_v2(**packages).get("Contents", []) == []
    assert [e.payload["package_id"] for e in ledger_events(stack) if e.kind == "subject.package_removed"] == \
        [package_id]


def test_a_hold_on_the_account_stops_the_erasure_before_it_deletes_anything(request_dag, world) -> None:
    stack, sendgrid = world["stack"], world["sendgrid"]
    with Ledger.open(stack.ledger_url) as ledger:
        ledger.place_hold(account_id=ACCOUNT, data_class=None, reason="litigation", reference="LEGAL-7",
                          placed_by="legal-1")
    before, stored = rows(stack), objects(stack)

    run = run_as(request_dag, "alice", run_conf=conf())

    assert rows(stack) == before and objects(stack) == stored, states(run)
    assert sendgrid.person_remaining(ACCOUNT, PERSON.email)["contacts"] == 1
    assert request_row(stack).status == "held"
    assert not [e for e in ledger_events(stack) if e.kind == "batch.intent"]
    (certificate,) = certificates(world)
    assert certificate["status"] == "partial"  # what the hold kept is an exception, not an erasure


def test_a_large_request_waits_for_a_second_person_and_the_filer_cannot_approve_it(request_dag, world,
                                                                                   monkeypatch) -> None:
    stack = world["stack"]
    monkeypatch.setenv("RETENTION_SUBJECT_APPROVAL_RECORDS", "1")
    before = rows(stack)

    own = answer_when_asked("subject_request", "approve", ["Approve"], {"reason": "done"}, user="alice")
    refused = run_as(request_dag, "alice", run_conf=conf())
    own.join(timeout=10)

    assert own.error is None and str(refused.state) == "failed" and states(refused)["approve"] == "failed"
    assert rows(stack) == before
    kinds = [e.kind for e in ledger_events(stack)]
    assert "subject.self_approval_refused" in kinds and "subject.approved" not in kinds
    row = request_row(stack)
    assert row.status == "awaiting_approval"

    second = answer_when_asked("subject_request", "approve", ["Approve"], {"reason": "checked"}, user="dpo-7")
    run = run_as(request_dag, "alice", run_conf=conf(request_id=row.id, account_id=None, request_type=None,
                                                                identifiers=None, reference=None, received_on=None))
    second.join(timeout=10)

    assert second.error is None and str(run.state) == "success", states(run)
    assert set(persons_rows(stack)) <= KEPT_UNDER_LAW
    approved = [e for e in ledger_events(stack) if e.kind == "subject.approved"]
    assert [(e.actor, e.payload["required"]) for e in approved] == [("api:dpo-7", True)]
    assert request_row(stack).status == "completed"


def test_an_invalid_request_is_refused_before_any_task_runs(request_dag, world) -> None:
    from airflow.sdk.definitions.param import ParamValidationError

    with pytest.raises(ParamValidationError, match="request_type"):
        request_dag.test(run_conf=conf(request_type="rectification"))
    assert not ledger_events(world["stack"])


# -- helpers -------------------------------------------------------------------------------------------------


def xcom(run, task_id: str):
    """What ``task_id`` returned in ``run``, from Airflow's metadata database."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        value = session.execute(sa.select(XComModel.value).where(
            XComModel.dag_id == run.dag_id, XComModel.run_id == run.run_id, XComModel.task_id == task_id,
            XComModel.key == "return_value")).first()
    assert value is not None, f"{task_id} returned nothing"
    return XComModel.deserialize_value(value)


def untar(data: bytes, top: str) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name.removeprefix(f"{top}/"): tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def test_housekeeping_mails_a_request_past_its_deadline_and_erases_closed_identifiers_after_the_appeal_window(
        airflow_db, world, smtp_sink, monkeypatch) -> None:
    """The daily DAG: an open request filed 40 days after the customer received it is past its one-month GDPR
    deadline (mailed, ids and dates only); a closed one's identifiers go once the appeal window (0 days here) has
    passed, its keyed hashes stay."""
    from airflow.dag_processing.dagbag import DagBag

    from retention.requests import tasks
    from tests.fixtures.smtp import body

    stack = world["stack"]
    received = pendulum.today("UTC").subtract(days=40).to_date_string()
    late = tasks.open_request({k: v for k, v in conf(received_on=received).items() if k != "subprocessors"},
                              filed_by="api:alice", actor="test")["request_id"]
    done = tasks.open_request({k: v for k, v in conf(identifiers={"email": ["nobody@example.invalid"]}).items()
                               if k != "subprocessors"}, filed_by="api:alice", actor="test")["request_id"]
    with Ledger.open(stack.ledger_url) as ledger:
        ledger.set_request_status(done, "rejected", actor="test")
    monkeypatch.setenv("RETENTION_SUBJECT_APPEAL_DAYS", "0")
    dag = DagBag(dag_folder=str(DAGS)).dags["subject_request_housekeeping"]
    dag.on_failure_callback, dag.has_on_failure_callback = None, False

    run = dag.test()

    assert str(run.state) == "success", states(run)
    (mail,) = [m for _, m in smtp_sink.received if "legal deadline" in str(m["Subject"])]
    text = body(mail)
    assert late in text and "PAST its deadline" in text and done not in text
    assert all(value not in text for value in (*IDENTIFIERS, PERSON.email.upper()))
    with Ledger.open(stack.ledger_url) as ledger:
        assert ledger.subject_request(done).identifiers is None and ledger.subject_request(done).identifier_hashes
        assert ledger.subject_request(late).identifiers is not None  # open: still needed
