"""The subprocessor client refuses what would leak credentials, exhaust memory or hold a worker for hours,
and checks the credentials before anything is deleted. Each attack runs against real HTTP servers on
loopback (``tests.emulators``) through the production ``erase``, with a ledger on a real PostgreSQL.

- A next-page link (Link header or body field) to another origin: refused naming the field; the other
  server receives nothing, and nothing listed is deleted. A same-origin link is followed.
- A base URL that is http off loopback: refused when the spec loads (file:line:field), and when a
  Connection gives one.
- A body past ``defaults.max_response_bytes``: refused while streaming, the rest never read.
- Retry-After past ``defaults.call_deadline_seconds``: the call ends with the deadline error, unslept.
- Wrong credentials: the spec's ``test_request`` fails before any delete, recorded as
  ``subprocessor.preflight_failed``; right ones let the erasure go on.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from retention.ledger import Ledger, migrate
from retention.rules.errors import RulesError
from retention.subprocessors import Credentials, erase, load_spec
from retention.subprocessors.errors import CallDeadlineExceeded, SubprocessorError
from retention.subprocessors.http import CHUNK, Client
from retention.subprocessors.spec import ConnectorSpec
from tests.emulators import datadog, openai, salesforce, sendgrid, sentry, twilio
from tests.emulators.base import Call, Emulator, Reply, bearer
from tests.fixtures.subprocessors import shipped_spec

TOKEN = "right-token"
ACCOUNT = "acct_1001"
MiB = 1024 * 1024


def contacts_spec(pagination: dict, **defaults: float) -> ConnectorSpec:
    return ConnectorSpec.model_validate({
        "subprocessor": "sentry", "docs": ["https://example.org/docs"], "conn_id": "contacts",
        "base_url": "https://api.example.org", "auth": {"kind": "bearer"},
        "rate_limit": {"max_attempts": 3},
        "test_request": {"method": "GET", "path": "/v1/me", "expect": [200]},
        "defaults": defaults,
        "resources": {"contacts": {
            "data_class": "error_reports", "description": "Contacts of the account.",
            "find": {"request": {"method": "GET", "path": "/v1/accounts/{account_id}/contacts"},
                     "pagination": pagination, "items": "data"},
            "delete": {"request": {"method": "DELETE", "path": "/v1/accounts/{account_id}/contacts/{id}"}},
            "verify": {"kind": "find_empty"},
            "max_records": 100,
        }},
    })


LINK = {"style": "link_header"}
BODY = {"style": "next_url", "field": "next"}


class Provider(Emulator):
    """Two pages of contacts; page 1 names page 2 at ``next_url`` (set by the test), in the Link header
    or the body field ``next``. ``listing`` replaces the first page's reply when set."""

    name = "hardening"

    def __init__(self) -> None:
        super().__init__()
        self.pages = [[{"id": "c1"}, {"id": "c2"}], [{"id": "c3"}]]
        self.next_url: str | None = None
        self.listing: Reply | None = None
        self.route("GET", r"/v1/me", lambda call: Reply(200, {"id": "integration"}))
        self.route("GET", r"/v1/accounts/[^/]+/contacts", self._list)
        self.route("DELETE", r"/v1/accounts/[^/]+/contacts/(?P<id>\w+)", self._delete)

    def authorized(self, call: Call) -> bool:
        return bearer(call, TOKEN)

    def remaining(self, tenant: str) -> dict[str, int]:
        return {"contacts": sum(len(page) for page in self.pages)}

    def _list(self, call: Call) -> Reply:
        if self.listing is not None:
            return self.listing
        if call.arg("page") == "2":
            return Reply(200, {"data": self.pages[1], "next": None})
        link = {"Link": f'<{self.next_url}>; rel="next"'} if self.next_url else {}
        return Reply(200, {"data": self.pages[0], "next": self.next_url}, link)

    def _delete(self, call: Call) -> Reply:
        self.pages = [[c for c in page if c["id"] != call.match["id"]] for page in self.pages]
        return Reply(204)

    def changes(self) -> list[tuple[str, str, int]]:
        return [c for c in self.calls if c[0] in ("DELETE", "POST", "PUT", "PATCH")]


@pytest.fixture
def provider() -> Iterator[Provider]:
    with Provider() as running:
        yield running


@pytest.fixture
def elsewhere() -> Iterator[Provider]:
    """A second server on another port: a link to it must never be followed."""
    with Provider() as running:
        yield running


@pytest.fixture
def pg_ledger(postgres_url: str) -> Iterator[Ledger]:
    migrate(postgres_url)
    with Ledger.open(postgres_url) as opened:
        yield opened


def run(the_spec: ConnectorSpec, provider: Emulator, ledger: Ledger, *, token: str = TOKEN, sleep=None):
    credentials = Credentials(base_url=provider.url, password=token, from_connection_host=True)
    return erase(the_spec, "contacts", ACCOUNT, ledger=ledger, actor="test", credentials=credentials,
                 sleep=sleep or (lambda seconds: None))


def kinds(ledger: Ledger) -> list[str]:
    return [e.kind for e in ledger.events() if e.kind.startswith("subprocessor.")]


# -- next-page links ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("pagination", "field"), [(LINK, "Link header"), (BODY, "body field 'next'")],
                         ids=["link_header", "body_field"])
def test_a_next_link_to_another_origin_is_refused_and_that_server_gets_nothing(
        provider, elsewhere, pg_ledger, pagination, field) -> None:
    provider.next_url = f"{elsewhere.url}/v1/accounts/{ACCOUNT}/contacts?page=2"
    with pytest.raises(SubprocessorError, match=re.escape(field)) as refused:
        run(contacts_spec(pagination), provider, pg_ledger)
    assert elsewhere.calls == []  # the token never reached it
    assert "sentry/contacts: find" in str(refused.value) and elsewhere.url.split(":")[-1] in str(refused.value)
    assert provider.changes() == []  # nothing listed on the refused page's run was deleted
    assert provider.remaining("") == {"contacts": 3}
    assert "subprocessor.intent" not in kinds(pg_ledger)


def test_a_next_link_to_another_scheme_on_the_same_host_and_port_is_refused(provider, pg_ledger) -> None:
    provider.next_url = provider.url.replace("http://", "https://") + f"/v1/accounts/{ACCOUNT}/contacts?page=2"
    with pytest.raises(SubprocessorError, match="points to https://127.0.0.1"):
        run(contacts_spec(LINK), provider, pg_ledger)
    assert provider.changes() == []


@pytest.mark.parametrize("pagination", [LINK, BODY], ids=["link_header", "body_field"])
@pytest.mark.parametrize("relative", [False, True], ids=["absolute", "relative"])
def test_a_same_origin_next_link_is_followed(provider, pg_ledger, pagination, relative) -> None:
    path = f"/v1/accounts/{ACCOUNT}/contacts?page=2"
    provider.next_url = path if relative else provider.url + path
    result = run(contacts_spec(pagination), provider, pg_ledger)
    assert (result.found, result.deleted, result.status) == (3, 3, "verified")
    assert provider.remaining("") == {"contacts": 0}


SPEC_FILE = """\
subprocessor: sentry
docs: [https://example.org/docs]
conn_id: contacts
base_url: https://api.example.org
regions:
  eu: https://eu.example.org
auth: {kind: bearer}
test_request: {method: GET, path: /v1/me}
resources:
  contacts:
    data_class: error_reports
    description: Contacts of the account.
    base_url: https://contacts.example.org
    find:
      request: {method: GET, path: "/v1/accounts/{account_id}/contacts"}
      pagination: {style: none}
    delete:
      request: {method: DELETE, path: "/v1/accounts/{account_id}/contacts/{id}"}
    verify: {kind: find_empty}
    max_records: 100
"""


@pytest.mark.parametrize(("secure", "insecure", "line", "field"), [
    ("base_url: https://api.example.org", "base_url: http://api.example.org", 4, "base_url"),
    ("eu: https://eu.example.org", "eu: http://eu.example.org", 6, "regions.eu"),
    ("base_url: https://contacts.example.org", "base_url: http://contacts.example.org", 13,
     "resources.contacts.base_url"),
], ids=["spec", "region", "resource"])
def test_an_http_base_url_off_loopback_is_refused_at_load(tmp_path, secure, insecure, line, field) -> None:
    path = tmp_path / "contacts.yaml"
    path.write_text(SPEC_FILE)
    assert load_spec(path).test_request.path == "/v1/me"
    path.write_text(SPEC_FILE.replace(secure, insecure))
    with pytest.raises(RulesError) as refused:
        load_spec(path)
    assert [(i.line, i.field) for i in refused.value.issues] == [(line, field)]
    assert str(refused.value.issues[0]).startswith(f"{path}:{line}:") and "not https" in refused.value.issues[0].message
    on_loopback = insecure.replace("api.example.org", "127.0.0.1:8080").replace("eu.example.org", "[::1]:8080")
    path.write_text(SPEC_FILE.replace(secure, on_loopback.replace("contacts.example.org", "localhost")))
    assert load_spec(path).subprocessor == "sentry"  # http on loopback: the local emulators, a test stack


def test_an_api_spec_without_a_test_request_is_refused_at_load(tmp_path) -> None:
    path = tmp_path / "contacts.yaml"
    path.write_text(SPEC_FILE.replace("test_request: {method: GET, path: /v1/me}\n", ""))
    with pytest.raises(RulesError) as refused:
        load_spec(path)
    assert [(i.line, i.field) for i in refused.value.issues] == [(8, "test_request")]  # at resources:, which needs it
    path.write_text(SPEC_FILE.replace("{method: GET, path: /v1/me}", "{method: DELETE, path: /v1/me}"))
    with pytest.raises(RulesError) as refused:
        load_spec(path)
    assert refused.value.issues[0].field == "test_request.method"


def test_a_connection_giving_http_off_loopback_is_refused_before_anything_is_sent() -> None:
    credentials = Credentials(base_url="http://api.example.org", password=TOKEN, from_connection_host=True)
    with pytest.raises(SubprocessorError, match="Connection contacts gives a base URL that is not https"):
        Client(contacts_spec(LINK), credentials)


# -- response size -------------------------------------------------------------------------------------

def body_of(size: int) -> Iterator[bytes]:
    """A JSON document of ``size`` bytes, produced a MiB at a time (never held whole by the server)."""
    yield b'{"data": [], "padding": "'
    left = size - 27
    while left > 0:
        yield b"x" * min(MiB, left)
        left -= MiB
    yield b'"}'


@pytest.mark.parametrize("declared", [False, True], ids=["chunked", "content_length"])
def test_a_body_past_the_limit_is_refused_without_reading_the_rest(provider, pg_ledger, declared) -> None:
    size = 64 * MiB
    provider.listing = Reply(200, stream=body_of(size), headers={"Content-Length": str(size)} if declared else {})
    with pytest.raises(SubprocessorError, match="larger than defaults.max_response_bytes") as refused:
        run(contacts_spec(LINK, max_response_bytes=MiB), provider, pg_ledger)
    message = str(refused.value)
    assert "sentry/contacts: find GET /v1/accounts/{account_id}/contacts" in message
    read = int(re.search(r"refused after reading (\d+)", message)[1])
    assert read <= MiB + CHUNK  # what the client took in: the limit and at most one chunk more
    assert 0 < provider.bytes_sent < size  # the server could not send it all: the connection was closed
    assert provider.changes() == []
    calls = [e.payload for e in pg_ledger.events() if e.kind == "subprocessor.call"]
    assert calls[-1]["error"] == "response_too_large" and calls[-1]["operation"] == "find"


def test_a_body_within_the_limit_is_read_whole(provider, pg_ledger) -> None:
    result = run(contacts_spec(LINK, max_response_bytes=1024), provider, pg_ledger)
    assert (result.deleted, result.status) == (2, "verified")


# -- the call's deadline -------------------------------------------------------------------------------

@pytest.mark.parametrize("retry_after", ["3600", "120"])
def test_a_retry_after_past_the_deadline_ends_the_call_unslept(provider, pg_ledger, retry_after) -> None:
    # 120 s is within what the old client slept (up to 300 s a wait, max_attempts times).
    provider.listing = Reply(429, {"error": "slow down"}, {"Retry-After": retry_after})
    slept: list[float] = []
    with pytest.raises(CallDeadlineExceeded) as ended:
        run(contacts_spec(LINK, call_deadline_seconds=5), provider, pg_ledger, sleep=slept.append)
    assert f"provider asks to wait {retry_after} s" in str(ended.value)
    assert "defaults.call_deadline_seconds (5 s) after 1 attempt" in str(ended.value)
    assert slept == []
    listings = [c for c in provider.calls if c[1].endswith("/contacts")]
    assert listings == [("GET", f"/v1/accounts/{ACCOUNT}/contacts", 429)]  # one try: the wait would pass the deadline
    assert provider.changes() == []


def test_a_retry_after_within_the_deadline_is_honoured(provider, pg_ledger) -> None:
    provider.listing = Reply(429, {"error": "slow down"}, {"Retry-After": "2"})
    slept: list[float] = []
    with pytest.raises(SubprocessorError, match="still failing after 3 attempts"):
        run(contacts_spec(LINK, call_deadline_seconds=600), provider, pg_ledger, sleep=slept.append)
    assert len(slept) == 2 and all(s >= 2 for s in slept)


# -- credentials pre-flight ----------------------------------------------------------------------------

def test_a_wrong_token_fails_the_pre_flight_before_any_delete(provider, pg_ledger) -> None:
    with pytest.raises(SubprocessorError, match=r"pre-flight test_request GET /v1/me answered HTTP 401 "
                                                r"\(the credentials were refused\)"):
        run(contacts_spec(LINK), provider, pg_ledger, token="wrong-token")
    assert provider.calls == [("GET", "/v1/me", 401)]  # nothing after it: no find, no delete
    assert provider.changes() == []
    failed = [e for e in pg_ledger.events() if e.kind == "subprocessor.preflight_failed"]
    assert [e.payload for e in failed] == [{"subprocessor": "sentry", "resource": "contacts", "account_id": ACCOUNT,
                                            "status": 401, "expected": [200]}]
    assert "subprocessor.intent" not in kinds(pg_ledger)


def test_a_right_token_passes_the_pre_flight_and_the_erasure_proceeds(provider, pg_ledger) -> None:
    result = run(contacts_spec(LINK), provider, pg_ledger)
    assert (result.deleted, result.status) == (2, "verified")
    assert provider.calls[0] == ("GET", "/v1/me", 200)
    assert "subprocessor.preflight_failed" not in kinds(pg_ledger)
    first = next(e.payload for e in pg_ledger.events() if e.kind == "subprocessor.call")
    assert (first["operation"], first["status"]) == ("preflight", 200)


# Every shipped API spec's test_request, against its emulator: refused with wrong credentials, answered with
# the expected status with the right ones.
SHIPPED = {
    "twilio": (twilio.TwilioEmulator, {"login": twilio.PARENT, "password": twilio.TOKEN}),
    "sentry": (sentry.SentryEmulator, {"password": sentry.TOKEN}),
    "sendgrid": (sendgrid.SendGridEmulator, {"password": sendgrid.KEY}),
    "salesforce": (salesforce.SalesforceEmulator,
                   {"login": salesforce.CLIENT_ID, "password": salesforce.CLIENT_SECRET}),
    "openai": (openai.OpenAIEmulator, {"password": openai.TOKEN}),
    "datadog": (datadog.DatadogEmulator, {"password": datadog.API_KEY, "extra": {"application_key": datadog.APP_KEY}}),
}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_every_shipped_spec_checks_its_credentials_before_deleting(name, subprocessor_ledger) -> None:
    emulator_class, right = SHIPPED[name]
    shipped = shipped_spec(name)
    resource = sorted(shipped.resources)[0]
    wrong = {**right, "password": "wrong-secret"}
    with emulator_class() as emulator:
        credentials = Credentials(base_url=emulator.url, from_connection_host=True, **wrong)
        with pytest.raises(SubprocessorError, match=r"pre-flight test_request .* \(the credentials were refused\)"):
            erase(shipped, resource, ACCOUNT, ledger=subprocessor_ledger, actor="test", credentials=credentials,
                  sleep=lambda seconds: None)
        # OAuth2: the token endpoint refused the secret, so not even the pre-flight was sent
        sent = [("POST", salesforce.TOKEN_PATH)] if shipped.auth.kind == "oauth2_client_credentials" \
            else [("GET", shipped.test_request.path)]
        assert [(method, path) for method, path, _ in emulator.calls] == sent
        with Client(shipped, Credentials(base_url=emulator.url, from_connection_host=True, **right)) as client:
            answer = client.call(shipped.test_request, {}, operation="preflight")
        assert answer.status_code in shipped.test_request.expect
