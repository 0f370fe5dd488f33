"""OAuth2 client credentials against the Salesforce emulator's token endpoint: a token is fetched, reused,
fetched again once it expires and once on a 401, and a wrong secret fails before any delete, naming the
subprocessor. Each test has its own client secret, so the process's token cache holds nothing of another."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable

import pytest

from retention.subprocessors import Credentials, SubprocessorError, erase
from retention.subprocessors.http import Client
from tests.emulators.salesforce import CLIENT_ID, TOKEN_PATH, SalesforceEmulator
from tests.fixtures.subprocessors import events_of, shipped_spec

TENANT = "acct_1001"


def wait_until(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        time.sleep(0.05)


def salesforce(*, report_expires_in: bool = False, token_lifetime: float = 7200.0) -> SalesforceEmulator:
    emulator = SalesforceEmulator(client_secret=f"secret-{uuid.uuid4().hex}", report_expires_in=report_expires_in,
                                  token_lifetime=token_lifetime)
    emulator.add_tenant(TENANT, leads=3, contacts=2)
    return emulator


def credentials(emulator: SalesforceEmulator, secret: str | None = None) -> Credentials:
    return Credentials(base_url=emulator.url, login=CLIENT_ID, password=secret or emulator.client_secret,
                       from_connection_host=True)


def preflight(client: Client) -> int:
    spec = shipped_spec("salesforce")
    assert spec.test_request is not None
    return client.call(spec.test_request, {}, operation="preflight").status_code


def test_one_token_serves_every_erasure_of_the_process(subprocessor_ledger) -> None:
    spec = shipped_spec("salesforce")
    with salesforce(report_expires_in=True, token_lifetime=3600) as emulator:
        for resource in ("leads", "contacts"):
            erase(spec, resource, TENANT, ledger=subprocessor_ledger, actor="test", credentials=credentials(emulator),
                  sleep=lambda seconds: None)
        assert emulator.remaining(TENANT) == {"leads": 0, "contacts": 0, "recycle_bin": 5}
        assert (emulator.token_requests, emulator.refused_tokens) == (1, 0)
        assert [c for c in emulator.calls if c[1] == TOKEN_PATH] == [("POST", TOKEN_PATH, 200)]


def test_a_token_past_its_expires_in_is_fetched_again_before_it_is_sent() -> None:
    spec = shipped_spec("salesforce")
    with salesforce(report_expires_in=True, token_lifetime=5) as emulator, \
            Client(spec, credentials(emulator)) as client:
        assert preflight(client) == 200
        assert emulator.token_requests == 1
        wait_until(emulator.all_tokens_expired)  # by the emulator's clock; the client's copy expired earlier
        assert preflight(client) == 200
        assert (emulator.token_requests, emulator.refused_tokens) == (2, 0)  # fetched before sending: no 401


def test_a_401_fetches_one_new_token_and_sends_the_request_again() -> None:
    spec = shipped_spec("salesforce")
    with salesforce() as emulator, Client(spec, credentials(emulator)) as client:  # no expires_in: Salesforce's
        assert preflight(client) == 200
        emulator.revoke_tokens()  # an admin ended the integration user's sessions
        assert preflight(client) == 200
        assert (emulator.token_requests, emulator.refused_tokens) == (2, 1)


def test_a_token_the_api_refuses_again_is_refreshed_only_once(subprocessor_ledger) -> None:
    spec = shipped_spec("salesforce")
    with salesforce(token_lifetime=0) as emulator:  # every token the org issues is refused by its API
        with pytest.raises(SubprocessorError, match=r"^salesforce: pre-flight test_request GET \S+ answered HTTP "
                                                    r"401 \(the credentials were refused\)"):
            erase(spec, "leads", TENANT, ledger=subprocessor_ledger, actor="test", credentials=credentials(emulator),
                  sleep=lambda seconds: None)
        assert (emulator.token_requests, emulator.refused_tokens) == (2, 2)
        assert emulator.remaining(TENANT)["leads"] == 3


def test_a_wrong_secret_fails_naming_the_subprocessor_and_deletes_nothing(subprocessor_ledger) -> None:
    spec = shipped_spec("salesforce")
    with salesforce() as emulator:
        with pytest.raises(SubprocessorError) as refused:
            erase(spec, "leads", TENANT, ledger=subprocessor_ledger, actor="test",
                  credentials=credentials(emulator, "wrong-secret"), sleep=lambda seconds: None)
        message = str(refused.value)
        assert message.startswith("salesforce: pre-flight test_request GET /services/data/v62.0/sobjects/Lead/describe "
                                  "was not sent: the OAuth2 token endpoint ")
        assert "HTTP 400 (invalid_client)" in message and "Connection salesforce" in message
        assert "wrong-secret" not in message and emulator.client_secret not in message
        assert emulator.calls == [("POST", TOKEN_PATH, 400)]  # not even the pre-flight was sent
        assert emulator.remaining(TENANT)["leads"] == 3
    failed = [e.payload for e in events_of(subprocessor_ledger, "subprocessor.preflight_failed")]
    assert failed == [{"subprocessor": "salesforce", "resource": "leads", "account_id": TENANT, "status": 400,
                       "expected": [200]}]


def test_neither_the_secret_nor_a_token_reaches_the_ledger(subprocessor_ledger) -> None:
    spec = shipped_spec("salesforce")
    with salesforce(report_expires_in=True, token_lifetime=3600) as emulator:
        erase(spec, "leads", TENANT, ledger=subprocessor_ledger, actor="test", credentials=credentials(emulator),
              sleep=lambda seconds: None)
        tokens = list(emulator.tokens)
    text = json.dumps([e.payload for e in subprocessor_ledger.events()])
    assert tokens and emulator.client_secret not in text and not any(token in text for token in tokens)
    assert TOKEN_PATH not in text  # the token request is not a subprocessor.call event


def test_a_connection_without_a_client_id_is_refused_before_anything_is_sent() -> None:
    spec = shipped_spec("salesforce")
    with salesforce() as emulator:
        no_id = Credentials(base_url=emulator.url, password=emulator.client_secret, from_connection_host=True)
        with pytest.raises(SubprocessorError, match="salesforce: auth oauth2_client_credentials needs the "
                                                    "Connection salesforce's login"):
            Client(spec, no_id)
        assert emulator.calls == []
