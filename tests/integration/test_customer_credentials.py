"""Customer API credentials: staff with the permission issue and revoke them (API and CLI) in their own name; a
Viewer or an op cannot, nobody anonymous can; only the secret's digest is kept; a token that is malformed, unknown,
wrong or revoked is refused with one and the same error."""

from __future__ import annotations

import getpass
import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from retention.cli import main
from retention.ledger import Ledger
from retention.ledger.credentials import CredentialRefused
from retention.ledger.models import CustomerCredential
from retention.settings import Settings
from tests.fixtures.api import STAFF, bearer

ACCOUNT, OTHER = "acct_1001", "acct_2002"
REPO = Path(__file__).resolve().parents[2]
ISSUE, LIST = "/retention/customer-credentials", "/retention/customer-credentials"


def revoke_path(credential_id: str) -> str:
    return f"/retention/customer-credentials/{credential_id}/revoke"


def customer_get(api, token: str):
    return api.get("/retention/customer/v1/requests", headers={"Authorization": f"Bearer {token}"})


def ledger_events() -> list:
    with Ledger.open(Settings.from_env().database_url) as ledger:
        return list(ledger.events())


# ----------------------------------------------------------------------------------------------------------------
# The ledger's part, on SQLite and PostgreSQL


def test_a_token_opens_its_account_and_only_the_secrets_digest_is_kept(ledger) -> None:
    credential_id, token = ledger.issue_credential(ACCOUNT, issued_by="api:dpo-7")
    identity = ledger.authenticate(token)
    assert (identity.credential_id, identity.account_id, identity.actor) == (
        credential_id, ACCOUNT, f"customer:{credential_id}")
    secret = token.split(".", 1)[1]
    with ledger._reader() as s:
        (row,) = s.query(CustomerCredential).all()
    assert row.secret_sha256 == hashlib.sha256(secret.encode()).hexdigest() and secret not in repr(row.__dict__)
    (issued,) = [e for e in ledger.events() if e.kind.startswith("credential.")]
    assert (issued.kind, issued.actor, issued.payload) == (
        "credential.issued", "api:dpo-7", {"credential_id": credential_id, "account_id": ACCOUNT})


def test_every_bad_token_is_refused_with_the_same_error(ledger) -> None:
    credential_id, token = ledger.issue_credential(ACCOUNT, issued_by="api:dpo-7")
    _, other_token = ledger.issue_credential(OTHER, issued_by="api:dpo-7")
    secret = token.split(".", 1)[1]
    other_secret = other_token.split(".", 1)[1]
    bad = {
        "empty": "",
        "malformed": "not a token",
        "unknown id": f"{'a' * 32}.{secret}",
        "another credential's secret": f"{credential_id}.{other_secret}",
        "one character changed": token[:-1] + ("A" if token[-1] != "A" else "B"),
        "the digest instead of the secret": f"{credential_id}.{hashlib.sha256(secret.encode()).hexdigest()}",
    }
    for why, candidate in bad.items():
        with pytest.raises(CredentialRefused) as refused:
            ledger.authenticate(candidate)
        assert str(refused.value) == "credential refused", why
    ledger.revoke_credential(credential_id, revoked_by="api:dpo-7")
    with pytest.raises(CredentialRefused):
        ledger.authenticate(token)
    assert ledger.authenticate(other_token).account_id == OTHER  # revoking one leaves the others working


def test_a_revocation_is_recorded_once_and_listed(ledger) -> None:
    first, _ = ledger.issue_credential(ACCOUNT, issued_by="api:dpo-7")
    second, _ = ledger.issue_credential(OTHER, issued_by="cli:ops")
    revoked = ledger.revoke_credential(first, revoked_by="api:legal-1")
    assert revoked.revoked_by == "api:legal-1" and revoked.revoked_at is not None
    with pytest.raises(ValueError, match="revoked already"):
        ledger.revoke_credential(first, revoked_by="api:legal-1")
    with pytest.raises(LookupError):
        ledger.revoke_credential("f" * 32, revoked_by="api:legal-1")
    assert [c.id for c in ledger.credentials(ACCOUNT)] == [first]
    assert {c.id for c in ledger.credentials()} == {first, second}
    assert [c.as_dict()["revoked_by"] for c in ledger.credentials(ACCOUNT)] == ["api:legal-1"]
    assert [e.kind for e in ledger.events() if e.kind.startswith("credential.")] == [
        "credential.issued", "credential.issued", "credential.revoked"]


# ----------------------------------------------------------------------------------------------------------------
# Staff routes, in Airflow's api-server app


def test_staff_with_the_permission_issue_a_credential_in_their_own_name(api) -> None:
    issued = api.post(ISSUE, headers=api.staff, json={"account_id": ACCOUNT})
    assert issued.status_code == 201, issued.text
    assert issued.headers["cache-control"] == "no-store"
    body = issued.json()
    assert body["account_id"] == ACCOUNT and body["token"].startswith(body["credential_id"] + ".")
    assert customer_get(api, body["token"]).status_code == 200

    listed = api.get(LIST, headers=bearer("auditor-2", "viewer"), params={"account_id": ACCOUNT})
    assert listed.status_code == 200
    (shown,) = listed.json()
    assert shown["credential_id"] == body["credential_id"] and shown["issued_by"] == f"api:{STAFF}"
    assert body["token"].split(".", 1)[1] not in listed.text and "secret" not in listed.text
    secret = body["token"].split(".", 1)[1]
    assert all(secret not in str(e.payload) for e in ledger_events())


def test_a_viewer_or_an_op_cannot_issue_or_revoke_and_anonymous_callers_get_401(api) -> None:
    issued = api.post(ISSUE, headers=api.staff, json={"account_id": ACCOUNT}).json()
    before = len(ledger_events())
    for role in ("viewer", "user", "op"):
        refused = api.post(ISSUE, headers=bearer("someone-5", role), json={"account_id": ACCOUNT})
        assert refused.status_code == 403, (role, refused.text)
        assert "CUSTOMER_CREDENTIALS" in refused.json()["detail"]
        assert api.post(revoke_path(issued["credential_id"]), headers=bearer("someone-5", role),
                        json={}).status_code == 403
    assert api.post(ISSUE, json={"account_id": ACCOUNT}).status_code == 401
    assert api.get(LIST).status_code == 401
    assert api.post(revoke_path(issued["credential_id"]), json={}).status_code == 401
    # A customer token is no Airflow login: it opens no staff route.
    assert api.get(LIST, headers={"Authorization": f"Bearer {issued['token']}"}).status_code == 403  # "Invalid JWT"
    assert len(ledger_events()) == before
    assert customer_get(api, issued["token"]).status_code == 200


def test_a_credential_is_issued_only_for_an_account_the_registry_knows(api) -> None:
    unknown = api.post(ISSUE, headers=api.staff, json={"account_id": "acct_l001"})
    assert unknown.status_code == 422 and "account_id" in unknown.text
    malformed = api.post(ISSUE, headers=api.staff, json={"account_id": "a b"})
    assert malformed.status_code == 422
    assert api.get(LIST, headers=api.staff).json() == []


def test_a_revoked_credential_answers_401_at_once(api) -> None:
    issued = api.post(ISSUE, headers=api.staff, json={"account_id": ACCOUNT}).json()
    assert customer_get(api, issued["token"]).status_code == 200
    revoked = api.post(revoke_path(issued["credential_id"]), headers=api.staff, json={})
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["revoked_by"] == f"api:{STAFF}"
    refused = customer_get(api, issued["token"])
    assert refused.status_code == 401 and refused.json() == {"detail": "not authenticated"}
    assert api.post(revoke_path(issued["credential_id"]), headers=api.staff, json={}).status_code == 409
    assert api.post(revoke_path("e" * 32), headers=api.staff, json={}).status_code == 404
    kinds = [(e.kind, e.actor) for e in ledger_events() if e.kind.startswith("credential.")]
    assert kinds == [("credential.issued", f"api:{STAFF}"), ("credential.revoked", f"api:{STAFF}")]


# ----------------------------------------------------------------------------------------------------------------
# The CLI


@pytest.fixture
def cli(tmp_path, monkeypatch):
    monkeypatch.setenv("RETENTION_DATABASE_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    monkeypatch.setenv("RETENTION_RULES_DIR", str(REPO / "retention_rules"))
    monkeypatch.setenv("RETENTION_ACCOUNTS_FILE", str(REPO / "demo" / "accounts.yaml"))
    runner = CliRunner()
    return lambda *args: runner.invoke(main, ["customer-credential", *args], catch_exceptions=False)


def test_the_cli_issues_lists_and_revokes_as_the_operator(cli) -> None:
    issued = cli("issue", "--account", ACCOUNT, "--json")
    assert issued.exit_code == 0, issued.output
    body = json.loads(issued.output)
    with Ledger.open(Settings.from_env().database_url) as ledger:
        assert ledger.authenticate(body["token"]).account_id == ACCOUNT
    listed = cli("list", "--account", ACCOUNT)
    assert listed.exit_code == 0 and body["credential_id"] in listed.output and "in use" in listed.output
    assert body["token"].split(".", 1)[1] not in listed.output
    revoked = cli("revoke", body["credential_id"], "--json")
    assert revoked.exit_code == 0, revoked.output
    assert json.loads(revoked.output)["credential"]["revoked_by"] == f"cli:{getpass.getuser()}"
    again = cli("revoke", body["credential_id"])
    assert again.exit_code == 1 and "revoked already" in again.output
    with Ledger.open(Settings.from_env().database_url) as ledger:
        with pytest.raises(CredentialRefused):
            ledger.authenticate(body["token"])
        actors = {e.kind: e.actor for e in ledger.events() if e.kind.startswith("credential.")}
    assert actors == {"credential.issued": f"cli:{getpass.getuser()}", "credential.revoked": f"cli:{getpass.getuser()}"}


def test_the_cli_refuses_an_account_the_registry_does_not_know(cli) -> None:
    refused = cli("issue", "--account", "acct_l001")
    assert refused.exit_code == 1 and "acct_l001" in refused.output and "registry" in refused.output
    assert "no customer credentials" in cli("list").output
