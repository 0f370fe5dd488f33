"""The customer API in Airflow's real api-server app: a customer's systems file data subject requests with a
credential staff issued, follow them and fetch the account's certificates; everything is scoped to the
credential's account (another account's ids answer 404, even for the same person); identifiers are never echoed
and never reach the ledger's chain or Airflow's metadata; a filed request triggers the ``subject_request`` DAG
with its id only, in the real Airflow metadata database the test session uses."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pendulum
import pytest

from retention.certificates import KeySet, verify_file
from retention.ledger import Ledger
from retention.settings import Settings
from tests.fixtures.adhoc_dags import registered

ACCOUNT, OTHER = "acct_1001", "acct_2002"
PERSON = "Jane.Doe@Example.org"  # the same person in both accounts
BASE = "/retention/customer/v1"
DAG_FILE = Path(__file__).resolve().parents[2] / "dags" / "subject_request.py"


@pytest.fixture
def subject_request_dag(airflow_db) -> str:
    """The real ``subject_request`` DAG of dags/ in Airflow's metadata database, as the dag-processor writes it, so a
    trigger is checked against its Params."""
    from airflow.dag_processing.dagbag import DagBag

    registered(DagBag(dag_folder=str(DAG_FILE)).dags["subject_request"])
    return "subject_request"


def credential(api, account: str) -> dict:
    issued = api.post("/retention/customer-credentials", headers=api.staff, json={"account_id": account})
    assert issued.status_code == 201, issued.text
    body = issued.json()
    return {"Authorization": f"Bearer {body['token']}", "credential_id": body["credential_id"]}


def auth(customer: dict) -> dict:
    return {"Authorization": customer["Authorization"]}


def erasure(**extra) -> dict:
    return {"request_type": "erasure", "identifiers": {"email": [PERSON]}, "reference": "PRIV-4411",
            "received_on": pendulum.today("UTC").to_date_string(), **extra}


def dag_runs(dag_id: str) -> list:
    from airflow.models import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        runs = list(session.scalars(select(DagRun).where(DagRun.dag_id == dag_id)))
        session.expunge_all()
    return runs


def customer_routes(app) -> list[tuple[str, str]]:
    """(method, path) of every route the plugin mounted under the customer API's prefix."""
    from fastapi.routing import APIRoute
    from starlette.routing import Mount

    def walk(routes, prefix: str):
        for route in routes:
            if isinstance(route, Mount):
                yield from walk(route.routes, prefix + route.path)
            elif isinstance(route, APIRoute):
                yield from ((method, prefix + route.path) for method in route.methods)

    return sorted((m, p) for m, p in walk(app.routes, "") if p.startswith(BASE + "/"))


def ledger() -> Ledger:
    return Ledger.open(Settings.from_env().database_url)


def in_clear(text: str) -> bool:
    return PERSON.lower() in text.lower()


def test_a_customer_files_an_erasure_request_and_the_dag_gets_its_id_only(api, subject_request_dag) -> None:
    from airflow.utils.types import DagRunType

    customer = credential(api, ACCOUNT)
    before = {r.run_id for r in dag_runs(subject_request_dag)}
    filed = api.post(f"{BASE}/requests", headers=auth(customer), json=erasure())
    assert filed.status_code == 202, filed.text
    answer = filed.json()
    assert answer["status"] == "filed" and not in_clear(filed.text)
    assert answer["received_at"].startswith(pendulum.today("UTC").to_date_string())

    (run,) = [r for r in dag_runs(subject_request_dag) if r.run_id not in before]
    assert run.run_id == answer["dag_run_id"]
    assert run.conf == {"request_id": answer["request_id"]}
    assert run.triggering_user_name == f"customer:{customer['credential_id']}"
    assert run.run_type == DagRunType.MANUAL

    with ledger() as opened:
        row = opened.subject_request(answer["request_id"])
        (event,) = opened.events_of_kind("subject.filed")
        chain = json.dumps([e.payload for e in opened.events()])
    assert (row.account_id, row.filed_by, row.status) == (ACCOUNT, f"customer:{customer['credential_id']}", "filed")
    assert event.actor == row.filed_by and event.payload["request_id"] == answer["request_id"]
    assert event.payload["account_id"] == ACCOUNT and len(event.payload["identifier_hashes"]) == 1
    assert not in_clear(chain)

    shown = api.get(f"{BASE}/requests/{answer['request_id']}", headers=auth(customer))
    assert shown.status_code == 200 and not in_clear(shown.text)
    request = shown.json()
    assert {k: request[k] for k in ("request_id", "request_type", "status", "regime", "closed_at", "certificate_id")} \
        == {"request_id": answer["request_id"], "request_type": "erasure", "status": "filed", "regime": "gdpr",
            "closed_at": None, "certificate_id": None}
    assert request["deadline_at"] == answer["deadline_at"] and request["days_left"] >= 28  # a month, GDPR 12(3)
    assert [r["request_id"] for r in api.get(f"{BASE}/requests", headers=auth(customer)).json()] == [
        answer["request_id"]]


def test_one_accounts_credential_never_reaches_another_account_even_for_the_same_person(
        api, subject_request_dag) -> None:
    mine, theirs = credential(api, ACCOUNT), credential(api, OTHER)
    my_request = api.post(f"{BASE}/requests", headers=auth(mine), json=erasure()).json()["request_id"]
    their_request = api.post(f"{BASE}/requests", headers=auth(theirs), json=erasure()).json()["request_id"]

    assert [r["request_id"] for r in api.get(f"{BASE}/requests", headers=auth(mine)).json()] == [my_request]
    assert [r["request_id"] for r in api.get(f"{BASE}/requests", headers=auth(theirs)).json()] == [their_request]
    other = api.get(f"{BASE}/requests/{their_request}", headers=auth(mine))
    missing = api.get(f"{BASE}/requests/{'0' * 32}", headers=auth(mine))
    assert (other.status_code, other.json()) == (missing.status_code, missing.json()) == (
        404, {"detail": "no such request"})

    naming = api.post(f"{BASE}/requests", headers=auth(mine), json=erasure(account_id=OTHER))
    assert naming.status_code == 422 and "account_id" in naming.text
    own = api.post(f"{BASE}/requests", headers=auth(mine), json=erasure(account_id=ACCOUNT))
    assert own.status_code == 422  # the account is the credential's, never the body's
    with ledger() as opened:
        assert [r.id for r in opened.subject_requests(account_id=ACCOUNT)] == [my_request]
        assert [r.id for r in opened.subject_requests(account_id=OTHER)] == [their_request]
        hashes = {r.account_id: r.identifier_hashes for r in opened.subject_requests()}
    assert hashes[ACCOUNT] != hashes[OTHER]  # the same person hashes apart in two accounts


def test_a_bad_request_is_refused_naming_the_field_and_never_echoing_a_value(api, subject_request_dag) -> None:
    customer = credential(api, ACCOUNT)
    bad_email, bad_phone = "jane.doe-at-example.org", "+44 not a number 77"

    def refused(body: object, field: str, value: str | None = None) -> None:
        answer = api.post(f"{BASE}/requests", headers=auth(customer), json=body)
        assert answer.status_code == 422, answer.text
        assert field in answer.text, answer.text
        if value is not None:
            assert value not in answer.text and value.lower() not in answer.text.lower(), answer.text

    refused(erasure(identifiers={"email": [bad_email]}), "body.identifiers", bad_email)
    refused(erasure(identifiers={"phone": [bad_phone]}), "body.identifiers", bad_phone)
    refused(erasure(identifiers={"shoe_size": ["44"]}), "body.identifiers")
    refused(erasure(identifiers={}), "body.identifiers")
    refused(erasure(request_type="rectification"), "body.request_type")
    refused(erasure(reference="Jane Doe asked"), "body.reference", "Jane Doe asked")
    refused(erasure(received_on="yesterday"), "body.received_on")
    refused([PERSON], "body: must be a JSON object", PERSON)  # FastAPI's own errors would echo the input
    with ledger() as opened:
        assert opened.subject_requests() == []
        assert not in_clear(json.dumps([e.payload for e in opened.events()]))


def test_every_customer_route_answers_the_same_401_without_a_valid_customer_token(api) -> None:
    from tests.fixtures.api import bearer

    customer = credential(api, ACCOUNT)
    revoked = credential(api, ACCOUNT)
    assert api.post(f"/retention/customer-credentials/{revoked['credential_id']}/revoke", headers=api.staff,
                    json={}).status_code == 200
    token = customer["Authorization"].removeprefix("Bearer ")
    wrong = [{}, {"Authorization": token}, {"Authorization": f"Basic {token}"}, bearer(),  # an Airflow admin
             {"Authorization": "Bearer " + token[:-2] + "xx"}, auth(revoked),
             {"Authorization": f"Bearer {token}" + " " * 500}]  # over-long: refused unread, never echoed
    ids = {"request_id": "0" * 32, "certificate_id": f"cert-{'0' * 32}", "fmt": "pdf"}
    routes = [(method, re.sub(r"\{(\w+)\}", lambda m: ids[m.group(1)], path))
              for method, path in customer_routes(api.app)]
    assert len(routes) == 6  # every route of the customer API, read from the app's own table
    for headers in wrong:
        for method, path in routes:
            answer = api.request(method, path, headers=headers, json=erasure())
            assert (answer.status_code, answer.json()) == (401, {"detail": "not authenticated"}), (headers, path)
            assert answer.headers["www-authenticate"] == "Bearer"
    with ledger() as opened:
        assert opened.subject_requests() == []


def test_a_failed_trigger_answers_503_and_leaves_the_request_filed(api, subject_request_dag) -> None:
    from airflow.api.common.delete_dag import delete_dag

    delete_dag(subject_request_dag)  # the DAG is not deployed: Airflow cannot start a run of it
    customer = credential(api, ACCOUNT)
    answer = api.post(f"{BASE}/requests", headers=auth(customer), json=erasure())
    assert answer.status_code == 503, answer.text
    detail = answer.json()["detail"]
    assert detail["status"] == "filed" and not in_clear(answer.text)
    with ledger() as opened:
        (row,) = opened.subject_requests()
    assert (row.id, row.status, row.run_id) == (detail["request_id"], "filed", None)
    assert dag_runs(subject_request_dag) == []


def test_the_account_lists_and_downloads_its_own_certificates_only(api) -> None:
    mine, theirs = credential(api, ACCOUNT), credential(api, OTHER)

    def issue(account: str) -> str:
        made = api.post("/retention/certificates", headers=api.staff, json={
            "run_id": api.run_id, "account_id": account, "exporter": "Acme Ltd", "importer": "Service Inc."})
        assert made.status_code == 201, made.text
        return made.json()["certificate_id"]

    my_certificate, their_certificate = issue(ACCOUNT), issue(OTHER)
    (listed,) = api.get(f"{BASE}/certificates", headers=auth(mine)).json()
    assert (listed["certificate_id"], listed["kind"], listed["request_id"], listed["revoked"]) == (
        my_certificate, "account_deletion", None, False)

    keys = KeySet.from_jwks(api.get("/retention/.well-known/jwks.json").json())
    pdf = api.get(f"{BASE}/certificates/{my_certificate}.pdf", headers=auth(mine))
    signed = api.get(f"{BASE}/certificates/{my_certificate}.json", headers=auth(mine))
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert verify_file(pdf.content, keys).certificate == verify_file(signed.content, keys).certificate
    assert verify_file(pdf.content, keys).certificate["account_id"] == ACCOUNT

    for path in (f"{their_certificate}.pdf", f"{their_certificate}.json", "cert-nope.pdf", f"{my_certificate}.txt"):
        assert api.get(f"{BASE}/certificates/{path}", headers=auth(mine)).status_code in (404, 422), path
    assert api.get(f"{BASE}/certificates/{their_certificate}.pdf", headers=auth(mine)).status_code == 404
    assert api.post(f"{BASE}/certificates/{their_certificate}/link", headers=auth(mine), json={}).status_code == 404
    assert [c["certificate_id"] for c in api.get(f"{BASE}/certificates", headers=auth(theirs)).json()] == [
        their_certificate]

    link = api.post(f"{BASE}/certificates/{my_certificate}/link", headers=auth(mine), json={"hours": 24})
    assert link.status_code == 201, link.text
    forwarded = api.get(link.json()["path"])  # an auditor, with the link and nothing else
    assert forwarded.status_code == 200 and verify_file(forwarded.content, keys).certificate["account_id"] == ACCOUNT

    revoked = api.post(f"/retention/certificates/{my_certificate}/revoke", headers=api.staff,
                       json={"reason": "reissued after a correction"})
    assert revoked.status_code == 200
    assert api.get(f"{BASE}/certificates/{my_certificate}.pdf", headers=auth(mine)).status_code == 410
    assert api.get(f"{BASE}/certificates", headers=auth(mine)).json()[0]["revoked"] is True

    actor = f"customer:{mine['credential_id']}"
    with ledger() as opened:
        mine_events = [(e.kind, e.payload.get("format")) for e in opened.events() if e.actor == actor]
    assert mine_events == [("certificate.downloaded", "pdf"), ("certificate.downloaded", "json"),
                           ("certificate.link_created", None)]


def test_a_certified_request_names_its_certificate_which_its_customer_downloads(api) -> None:
    """The request's steps are written through the ledger API as its tasks write them (``SubjectRunWriter``); its
    certificate is issued, signed and archived by ``certificates.subject`` as the DAG's last step does."""
    from retention.certificates import as_pdf, load_signing_key
    from retention.certificates.archive import Archive
    from retention.certificates.subject import issue_subject_certificate
    from retention.identifier_hashes import load_key
    from retention.rules.subjects import Subject
    from tests.fixtures.ledger_writer import SubjectRunWriter

    mine, theirs = credential(api, ACCOUNT), credential(api, OTHER)
    settings = Settings.from_env()
    key = load_signing_key(settings.signing_key_file)
    with ledger() as opened:
        writer = SubjectRunWriter.file(opened, load_key(settings), ACCOUNT, Subject.of({"email": [PERSON]}))
        writer.preview([{"location": "visitors", "data_class": "visitor_profiles", "matched": 0, "action": "delete",
                         "rule_id": "visitor-profiles-european", "basis": None}], [])
        writer.close("nothing_found", ("subject.nothing_found", {"locations_checked": 1, "subprocessors_checked": 0}))
        document = issue_subject_certificate(opened, writer.request_id, key, exporter="Acme Ltd",
                                             importer="Service Inc.", rules_dir=settings.rules_dir, actor="staff-1")
    certificate_id = Archive(settings.certificates_dir).save(document, as_pdf(document, key))

    request = api.get(f"{BASE}/requests/{writer.request_id}", headers=auth(mine)).json()
    assert (request["status"], request["certificate_id"], request["days_left"]) == (
        "nothing_found", certificate_id, None)
    assert request["closed_at"] is not None and not in_clear(json.dumps(request))
    (listed,) = api.get(f"{BASE}/certificates", headers=auth(mine)).json()
    assert (listed["certificate_id"], listed["kind"], listed["request_id"]) == (
        certificate_id, "subject_erasure", writer.request_id)
    downloaded = api.get(f"{BASE}/certificates/{certificate_id}.json", headers=auth(mine))
    keys = KeySet.from_jwks(api.get("/retention/.well-known/jwks.json").json())
    assert verify_file(downloaded.content, keys).certificate["certificate_id"] == certificate_id

    assert api.get(f"{BASE}/requests/{writer.request_id}", headers=auth(theirs)).status_code == 404
    assert api.get(f"{BASE}/certificates/{certificate_id}.json", headers=auth(theirs)).status_code == 404
    assert api.get(f"{BASE}/certificates", headers=auth(theirs)).json() == []
