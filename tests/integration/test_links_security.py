"""Customer links, attacked through Airflow's real api-server app: a token without its account claim, a
weak secret, a rotated secret, a SHA-1 signature, a revoked link. Each attack is made, then seen refused."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets

import pytest
from click.testing import CliRunner
from itsdangerous import URLSafeSerializer

from retention.cli import main
from retention.ledger import Ledger
from retention.links import CERTIFICATE_DOWNLOAD, RETURN_RECEIPT, LinkInvalid, open_link, token_digest
from retention.settings import Settings
from tests.integration.test_certificates_api import ACCOUNT, OTHER, issue, link

FAR = 4102444800  # 2100-01-01: tokens below are refused for what they claim, not for being expired


def signed(claims: dict, secret: str | None = None) -> str:
    """A token made the way the product signs links (HMAC-SHA256, the purpose as salt), written out here
    so the test pins the scheme rather than reusing the code under test."""
    serializer = URLSafeSerializer(secret or os.environ["RETENTION_LINK_SECRET"], salt=CERTIFICATE_DOWNLOAD,
                                   signer_kwargs={"digest_method": hashlib.sha256})
    return serializer.dumps(claims)


def download(api, certificate_id: str, token: str):
    return api.get(f"/retention/certificates/{certificate_id}/download", params={"token": token, "format": "json"})


def ledger_events(kind: str) -> list:
    with Ledger.open(Settings.from_env().database_url) as ledger:
        return ledger.events_of_kind(kind)


def test_a_token_without_the_account_claim_opens_no_certificate(api) -> None:
    mine = issue(api, ACCOUNT)
    issue(api, OTHER)
    # the control: the same construction with both claims opens the certificate
    assert download(api, mine, signed({"c": mine, "a": ACCOUNT, "exp": FAR})).status_code == 200
    # the attack: without "a" the download looked the certificate up among every account's
    for claims in ({"c": mine, "exp": FAR}, {"c": mine, "a": None, "exp": FAR}, {"c": mine, "a": "", "exp": FAR}):
        refused = download(api, mine, signed(claims))
        assert refused.status_code == 403, claims
        assert refused.json() == {"detail": "this link is not valid"}
    assert len(ledger_events("certificate.downloaded")) == 1  # the control's, no other


def test_a_receipt_token_without_the_account_claim_is_not_valid() -> None:
    secret = secrets.token_urlsafe(32)
    token = URLSafeSerializer(secret, salt=RETURN_RECEIPT, signer_kwargs={"digest_method": hashlib.sha256}) \
        .dumps({"p": "pkg-1", "exp": FAR})
    with pytest.raises(LinkInvalid):
        open_link(RETURN_RECEIPT, token, secret)


WEAK = {
    "32 spaces": " " * 32,
    "one character repeated": "l" * 48,
    "a word repeated": "password" * 6,
    "too short": secrets.token_urlsafe(16),
    "hex, too short": secrets.token_hex(16),
    "a sentence": "correct horse battery staple, and more words",
    "padded with whitespace": " " + secrets.token_urlsafe(32),
}


@pytest.mark.parametrize("weak", WEAK.values(), ids=WEAK.keys())
def test_a_weak_link_secret_stops_the_api_and_the_cli_at_start(weak, monkeypatch) -> None:
    from retention.api import create_app

    monkeypatch.setenv("RETENTION_LINK_SECRET", weak)
    with pytest.raises(ValueError, match="^RETENTION_LINK_SECRET .*expected at least 32 random bytes"):
        Settings.from_env()
    with pytest.raises(ValueError, match="^RETENTION_LINK_SECRET "):
        create_app()
    shown = CliRunner().invoke(main, ["config", "show"])
    assert shown.exit_code == 1 and shown.output.startswith("Error: RETENTION_LINK_SECRET ")
    assert weak not in shown.output


def test_a_weak_previous_secret_is_refused_too_and_a_previous_one_needs_a_current_one(monkeypatch) -> None:
    monkeypatch.setenv("RETENTION_LINK_SECRET", secrets.token_urlsafe(32))
    monkeypatch.setenv("RETENTION_LINK_SECRET_PREVIOUS", f"{secrets.token_hex(32)}, {' ' * 40}x")
    with pytest.raises(ValueError, match=r"^RETENTION_LINK_SECRET_PREVIOUS \(secret 2\)"):
        Settings.from_env()
    monkeypatch.delenv("RETENTION_LINK_SECRET")
    monkeypatch.setenv("RETENTION_LINK_SECRET_PREVIOUS", secrets.token_hex(32))
    with pytest.raises(ValueError, match="RETENTION_LINK_SECRET_PREVIOUS is set without RETENTION_LINK_SECRET"):
        Settings.from_env()


@pytest.mark.parametrize("strong", [secrets.token_urlsafe(32), secrets.token_hex(32),
                                    base64.b64encode(os.urandom(32)).decode()],
                         ids=["token_urlsafe(32)", "openssl rand -hex 32", "openssl rand -base64 32"])
def test_secrets_from_a_random_generator_are_accepted(strong, monkeypatch) -> None:
    monkeypatch.setenv("RETENTION_LINK_SECRET", strong)
    assert Settings.from_env().link_secret == strong


def test_links_of_the_previous_secret_open_during_a_rotation_and_stop_when_it_is_removed(api, monkeypatch) -> None:
    certificate_id = issue(api, ACCOUNT)
    old_path, _ = link(api, certificate_id)
    old_secret, new_secret = os.environ["RETENTION_LINK_SECRET"], secrets.token_urlsafe(32)

    monkeypatch.setenv("RETENTION_LINK_SECRET", new_secret)  # rotation starts: the old secret still verifies
    monkeypatch.setenv("RETENTION_LINK_SECRET_PREVIOUS", old_secret)
    assert api.get(old_path).status_code == 200
    new_path, new_token = link(api, certificate_id)
    assert URLSafeSerializer(new_secret, salt=CERTIFICATE_DOWNLOAD,  # new links are signed with the new one
                             signer_kwargs={"digest_method": hashlib.sha256}).loads(new_token)["c"] == certificate_id
    assert api.get(new_path).status_code == 200

    monkeypatch.delenv("RETENTION_LINK_SECRET_PREVIOUS")  # rotation ends
    assert api.get(old_path).status_code == 403
    assert api.get(new_path).status_code == 200


def test_links_are_signed_with_sha256_and_a_sha1_signature_is_refused(api) -> None:
    certificate_id = issue(api, ACCOUNT)
    _, token = link(api, certificate_id)
    assert len(base64.urlsafe_b64decode(token.rsplit(".", 1)[1] + "==")) == 32  # an HMAC-SHA256, not 20 bytes
    claims = {"c": certificate_id, "a": ACCOUNT, "exp": FAR}
    # the attack: a token in the old scheme (itsdangerous's default HMAC-SHA1), with the right secret
    sha1 = URLSafeSerializer(os.environ["RETENTION_LINK_SECRET"], salt=CERTIFICATE_DOWNLOAD).dumps(claims)
    assert download(api, certificate_id, sha1).status_code == 403
    assert download(api, certificate_id, signed(claims)).status_code == 200  # the same claims under SHA-256


def test_a_revoked_link_stops_while_another_link_of_the_same_certificate_works(api) -> None:
    certificate_id = issue(api, ACCOUNT)
    revoked_path, revoked_token = link(api, certificate_id)
    kept_path, _ = link(api, certificate_id)
    made = api.post(f"/retention/certificates/{certificate_id}/links", headers=api.staff, json={"hours": 1}).json()
    assert made["link_id"] == token_digest(made["path"].split("token=", 1)[1])
    link_id = token_digest(revoked_token)
    revoke = f"/retention/certificates/{certificate_id}/links/{link_id}/revoke"

    assert api.post(revoke, json={}).status_code == 401  # staff only
    answer = api.post(revoke, headers=api.staff, json={})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"certificate_id": certificate_id, "link_id": link_id, "revoked": True}

    assert api.get(revoked_path).status_code == 410
    assert api.get(kept_path).status_code == 200
    assert api.post(revoke, headers=api.staff, json={}).status_code == 200  # again: still revoked, no new event
    (event,) = ledger_events("link.revoked")
    assert event.payload == {"certificate_id": certificate_id, "account_id": ACCOUNT, "token_sha256": link_id}
    assert event.actor != "customer-link" and revoked_token not in str(event.payload)
    # a link id that no link of this certificate has, or one of another certificate's links
    other = issue(api, OTHER)
    _, other_token = link(api, other)
    for unknown in (hashlib.sha256(b"nothing").hexdigest(), token_digest(other_token)):
        assert api.post(f"/retention/certificates/{certificate_id}/links/{unknown}/revoke", headers=api.staff,
                        json={}).status_code == 404
    assert api.post(f"/retention/certificates/{certificate_id}/links/not-an-id/revoke", headers=api.staff,
                    json={}).status_code == 422
