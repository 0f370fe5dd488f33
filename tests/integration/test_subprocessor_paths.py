"""A path parameter is never empty, ``.`` or ``..``: the HTTP client resolves dot segments, so
``DELETE /v1/accounts/{account_id}/contacts/{id}`` with ``..`` would reach another resource (httpx sends
``/v1/accounts/../contacts`` as ``/v1/contacts``). Refused before sending, naming the placeholder, for the
account id, ids a provider returns and fan-out bindings alike; checked on a local HTTP server."""

from __future__ import annotations

from urllib.parse import unquote

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retention.subprocessors import Credentials, erase
from retention.subprocessors.errors import SubprocessorError
from retention.subprocessors.render import render
from retention.subprocessors.spec import ConnectorSpec
from tests.emulators.base import Call, Emulator, Reply

SPEC = {
    "subprocessor": "sentry", "docs": ["https://example.org/docs"], "conn_id": "contacts",
    "base_url": "https://api.example.org", "auth": {"kind": "bearer"},
    "rate_limit": {"max_attempts": 1}, "test_request": {"method": "GET", "path": "/v1/me"},
    "resources": {
        "contacts": {
            "data_class": "error_reports", "description": "Contacts of one workspace of the account.",
            "fan_out": {"request": {"method": "GET", "path": "/v1/accounts/{account_id}/workspaces"},
                        "pagination": {"style": "none"}, "bind": {"workspace": "name"}},
            "find": {"request": {"method": "GET", "path": "/v1/accounts/{account_id}/workspaces/{workspace}/contacts"},
                     "pagination": {"style": "none"}},
            "delete": {"request": {"method": "DELETE",
                                   "path": "/v1/accounts/{account_id}/workspaces/{workspace}/contacts/{id}"}},
            "verify": {"kind": "find_empty"},
            "max_records": 100,
        },
    },
}


class Provider(Emulator):
    """Answers listings with whatever the test puts in ``workspaces`` and ``contacts``; deletes anything."""

    name = "paths"

    def __init__(self) -> None:
        super().__init__()
        self.workspaces: list[dict] = [{"name": "main"}]
        self.contacts: list[dict] = []
        self.route("GET", r"/v1/accounts/[^/]+/workspaces", lambda call: Reply(200, self.workspaces))
        self.route("GET", r"/v1/accounts/[^/]+/workspaces/[^/]+/contacts", lambda call: Reply(200, self.contacts))
        self.route("GET", r"/v1/me", lambda call: Reply(200, {}))  # the spec's credentials pre-flight
        self.route("DELETE", r"/.*", self._delete)

    def _delete(self, call: Call) -> Reply:
        self.contacts = [c for c in self.contacts if not call.path.endswith(f"/contacts/{c['id']}")]
        return Reply(204)

    def authorized(self, call: Call) -> bool:
        return True

    def remaining(self, tenant: str) -> dict[str, int]:
        return {"contacts": len(self.contacts)}

    def deletes(self) -> list[str]:
        return [path for method, path, _ in self.calls if method == "DELETE"]


@pytest.fixture
def provider():
    with Provider() as running:
        yield running


def run(provider: Provider, subprocessor_ledger, account_id: str = "acct_1001"):
    spec = ConnectorSpec.model_validate(SPEC)
    credentials = Credentials(base_url=provider.url, password="t", from_connection_host=True)
    return erase(spec, "contacts", account_id, ledger=subprocessor_ledger, actor="test", credentials=credentials,
                 sleep=lambda seconds: None)


def test_a_well_formed_run_deletes_by_id(provider, subprocessor_ledger) -> None:
    provider.contacts = [{"id": "c1"}, {"id": "c2"}]
    result = run(provider, subprocessor_ledger)
    assert (result.deleted, result.status) == (2, "verified")
    assert provider.deletes() == ["/v1/accounts/acct_1001/workspaces/main/contacts/c1",
                                  "/v1/accounts/acct_1001/workspaces/main/contacts/c2"]


@pytest.mark.parametrize("account_id", ["..", ".", ""])
def test_an_account_id_that_is_not_one_sends_nothing(provider, subprocessor_ledger, account_id) -> None:
    provider.contacts = [{"id": "c1"}]
    with pytest.raises(SubprocessorError, match="account_id"):
        run(provider, subprocessor_ledger, account_id)
    assert provider.calls == []


@pytest.mark.parametrize("bad", ["..", "."])
def test_an_id_the_provider_returns_as_a_dot_segment_is_never_sent(provider, subprocessor_ledger, bad) -> None:
    # /v1/accounts/acct_1001/workspaces/main/contacts/.. would be sent as .../workspaces/main: the workspace.
    provider.contacts = [{"id": bad}]
    with pytest.raises(SubprocessorError, match=r"\{id\}"):
        run(provider, subprocessor_ledger)
    assert provider.deletes() == []


@pytest.mark.parametrize("bad", ["..", "."])
def test_a_fan_out_value_that_is_a_dot_segment_is_never_sent(provider, subprocessor_ledger, bad) -> None:
    # {workspace} = ".." would aim the find and the deletes at /v1/accounts/acct_1001/contacts.
    provider.workspaces = [{"name": bad}]
    provider.contacts = [{"id": "c1"}]
    with pytest.raises(SubprocessorError, match=r"\{workspace\}"):
        run(provider, subprocessor_ledger)
    assert [path for _, path, _ in provider.calls] == ["/v1/me", "/v1/accounts/acct_1001/workspaces"]


@pytest.mark.parametrize("value", ["", ".", "..", ["a", ".."], [""], []])
def test_render_refuses_path_values_that_name_no_segment(value) -> None:
    with pytest.raises(SubprocessorError, match=r"\{ids\}"):
        render("/v1/contacts/{ids}", {"ids": value}, in_path=True)


def test_render_refuses_an_empty_value_anywhere_but_keeps_dots_outside_paths() -> None:
    with pytest.raises(SubprocessorError, match=r"\{account_id\}"):
        render("tenant:{account_id}", {"account_id": ""})
    assert render("name = '{name}'", {"name": ".."}) == "name = '..'"
    assert render("/v1/{ids}", {"ids": ["a.b", "c..d"]}, in_path=True) == "/v1/a.b,c..d"


CLIENT = httpx.Client(base_url="http://127.0.0.1:9")  # builds requests only; never sends


@settings(deadline=None)
@given(st.text(min_size=1, max_size=40).filter(lambda v: v not in (".", "..")))
def test_any_other_value_stays_one_path_segment_as_sent(value: str) -> None:
    """Whatever a provider returns, a value fills exactly its own segment of the URL httpx sends."""
    path = render("/v1/accounts/{account_id}/contacts", {"account_id": value}, in_path=True)
    sent = CLIENT.build_request("DELETE", path).url
    assert [unquote(p) for p in sent.raw_path.decode().split("?")[0].split("/")] == ["", "v1", "accounts", value,
                                                                                      "contacts"]
