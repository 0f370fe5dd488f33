"""The certificates API inside Airflow's real api-server app: staff routes need Airflow's JWT, customers
download through signed links that open one certificate of one account and nothing else."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from retention.certificates import KeySet, verify_file
from retention.ledger import Ledger
from retention.settings import Settings

ACCOUNT, OTHER = "acct_1001", "acct_2002"


def issue(api, account: str) -> str:
    made = api.post("/retention/certificates", headers=api.staff, json={
        "run_id": api.run_id, "account_id": account, "exporter": "Acme Ltd", "importer": "Service Inc."})
    assert made.status_code == 201, made.text
    return made.json()["certificate_id"]


def link(api, certificate_id: str, hours: int = 24) -> tuple[str, str]:
    made = api.post(f"/retention/certificates/{certificate_id}/links", headers=api.staff, json={"hours": hours})
    assert made.status_code == 201, made.text
    path = made.json()["path"]
    return path, parse_qs(urlsplit(path).query)["token"][0]


def test_staff_routes_answer_401_without_airflows_token(api) -> None:
    assert api.get("/retention/certificates").status_code == 401
    assert api.post("/retention/certificates", json={}).status_code == 401
    assert api.post("/retention/certificates/cert-0/revoke", json={"reason": "x" * 5}).status_code == 401
    assert api.post("/retention/certificates/cert-0/links", json={}).status_code == 401
    assert api.get("/retention/forecast").status_code == 401
    forged = {"Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"}
    assert api.get("/retention/certificates", headers=forged).status_code == 403  # Airflow: "Invalid JWT token"
    assert api.get("/retention/certificates", headers=api.staff).status_code == 200


def test_a_customer_downloads_a_verifiable_certificate_and_the_ledger_records_it(api) -> None:
    certificate_id = issue(api, ACCOUNT)
    path, _ = link(api, certificate_id)

    pdf = api.get(path)
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    keys = KeySet.from_jwks(api.get("/retention/.well-known/jwks.json").json())  # public, no token
    verified = verify_file(pdf.content, keys)
    assert verified.certificate["certificate_id"] == certificate_id and verified.certificate["account_id"] == ACCOUNT
    signed_json = api.get(path + "&format=json")
    assert verify_file(signed_json.content, keys).certificate == verified.certificate

    listed = api.get("/retention/certificates", params={"account_id": ACCOUNT}, headers=api.staff).json()
    assert [c["certificate_id"] for c in listed] == [certificate_id]
    with Ledger.open(Settings.from_env().database_url) as ledger:
        kinds = [e.kind for e in ledger.events() if e.kind.startswith("certificate.")]
        actors = {e.kind: e.actor for e in ledger.events() if e.kind.startswith("certificate.")}
    assert kinds == ["certificate.issued", "certificate.link_created", "certificate.downloaded",
                     "certificate.downloaded"]
    assert actors["certificate.issued"] == "api:dpo-7"


def links_made(certificate_id: str) -> int:
    with Ledger.open(Settings.from_env().database_url) as ledger:
        return len([e for e in ledger.events_of_kind("certificate.link_created")
                    if e.payload["certificate_id"] == certificate_id])


def test_a_complete_certificate_is_linked_at_once(api) -> None:
    complete = issue(api, ACCOUNT)
    made = api.post(f"/retention/certificates/{complete}/links", headers=api.staff, json={"hours": 24})
    assert (made.status_code, made.json()["status"]) == (201, "complete")
    assert links_made(complete) == 1


def test_a_partial_certificate_is_linked_only_once_the_person_acknowledged_it(api) -> None:
    """A hold in force on the account is an exception of its certificate: it is partial, and a customer sent a link
    to it should be sent it knowingly."""
    hold = api.post("/retention/holds", headers=api.staff,
                    json={"account_id": ACCOUNT, "reason": "litigation", "reference": "LEGAL-14"})
    assert hold.status_code == 201, hold.text
    partial = issue(api, ACCOUNT)
    (listed,) = api.get("/retention/certificates", headers=api.staff).json()
    assert listed["status"] == "partial"
    refused = api.post(f"/retention/certificates/{partial}/links", headers=api.staff, json={"hours": 24})
    assert refused.status_code == 409
    assert refused.json()["detail"].startswith(f"acknowledge_partial: certificate {partial} is partial: ")
    assert links_made(partial) == 0

    made = api.post(f"/retention/certificates/{partial}/links", headers=api.staff,
                    json={"hours": 24, "acknowledge_partial": True})
    assert (made.status_code, made.json()["status"]) == (201, "partial"), made.text
    assert api.get(made.json()["path"]).status_code == 200
    assert links_made(partial) == 1


def test_links_that_are_forged_expired_or_replayed_open_nothing(api, monkeypatch) -> None:
    mine, theirs = issue(api, ACCOUNT), issue(api, OTHER)
    path, token = link(api, mine)

    def refused(response, status: int) -> None:
        assert response.status_code == status
        assert list(response.json()) == ["detail"]  # a sentence, no document
        assert not any(leak in response.text for leak in (mine, theirs, ACCOUNT, OTHER, "%PDF"))

    # replayed for another certificate (the other account's): the token names mine
    refused(api.get(f"/retention/certificates/{theirs}/download", params={"token": token}), 403)
    # forged: one character of the signature changed, or signed with another secret
    payload, signature = token.rsplit(".", 1)  # change the signature's first character (its last may
    forged = f"{payload}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"  # carry only unused bits)
    refused(api.get(f"/retention/certificates/{mine}/download", params={"token": forged}), 403)
    from itsdangerous import URLSafeSerializer

    from retention.links import CERTIFICATE_DOWNLOAD as LINK_SALT

    other_secret = URLSafeSerializer("x" * 48, salt=LINK_SALT).dumps({"c": theirs, "a": OTHER, "exp": 4102444800})
    refused(api.get(f"/retention/certificates/{theirs}/download", params={"token": other_secret}), 403)
    # a genuine token naming my certificate under the other account: not that account's certificate
    from retention.links import sign_link

    crossed, _ = sign_link(LINK_SALT, {"c": mine, "a": OTHER}, 24, Settings.from_env().link_secret)
    refused(api.get(f"/retention/certificates/{mine}/download", params={"token": crossed}), 404)
    # expired
    expired, _ = sign_link(LINK_SALT, {"c": mine, "a": ACCOUNT}, -1, Settings.from_env().link_secret)
    refused(api.get(f"/retention/certificates/{mine}/download", params={"token": expired}), 403)
    # revoked: the link stops working
    assert api.post(f"/retention/certificates/{mine}/revoke", headers=api.staff,
                    json={"reason": "reissued after a correction"}).status_code == 200
    refused(api.get(path), 410)
    with Ledger.open(Settings.from_env().database_url) as ledger:
        assert not [e for e in ledger.events() if e.kind == "certificate.downloaded"]


def test_staff_read_the_forecast_through_the_api(api, stack) -> None:
    answer = api.get("/retention/forecast", params={"days": 366}, headers=api.staff)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    last = stack.now.add(days=367).to_date_string()
    assert body["lines"] and all(stack.now.to_date_string() <= line["day"] <= last for line in body["lines"])
    by_day_total = sum(map(sum, (day.values() for day in body["by_day"].values())))
    assert by_day_total == sum(line["records"] for line in body["lines"])
    assert api.get("/retention/forecast", params={"days": 0}, headers=api.staff).status_code == 422
