"""Every kind and style a spec can name has its strategy, and the OAuth2 token endpoint follows the rule every
base URL follows."""

from __future__ import annotations

import typing

import pytest

from retention.rules.errors import RulesError
from retention.subprocessors import auth, completion, pagination, verification
from retention.subprocessors.spec import Auth, Completion, Pagination, Verify, load_spec
from tests.unit.test_subprocessor_spec import GOOD, write


def tags(union: object, field: str) -> set[str]:
    members = typing.get_args(typing.get_args(union)[0])
    return {typing.get_args(member.model_fields[field].annotation)[0] for member in members}


def models(union: object) -> set[type]:
    return set(typing.get_args(typing.get_args(union)[0]))


def test_every_pagination_style_completion_and_verify_kind_has_a_strategy() -> None:
    assert set(pagination.STRATEGIES) == tags(Pagination, "style")
    assert set(completion.STRATEGIES) == tags(Completion, "kind")
    assert set(verification.STRATEGIES) == tags(Verify, "kind")
    assert set(auth.STRATEGIES) == models(Auth)


def test_an_oauth2_token_url_on_the_base_urls_host_loads(tmp_path) -> None:
    text = GOOD.replace("auth: {kind: basic}", "auth: {kind: oauth2_client_credentials, token_url: /oauth2/token}")
    spec = load_spec(write(tmp_path, text))
    assert spec.auth is not None and spec.auth.kind == "oauth2_client_credentials"


@pytest.mark.parametrize("url", ["http://login.example.com/oauth2/token", "ftp://login.example.com/token"])
def test_an_oauth2_token_url_that_is_not_https_is_refused_at_its_line(tmp_path, url) -> None:
    text = GOOD.replace("auth: {kind: basic}", f"auth: {{kind: oauth2_client_credentials, token_url: '{url}'}}")
    with pytest.raises(RulesError) as refused:
        load_spec(write(tmp_path, text))
    assert [(i.line, i.field) for i in refused.value.issues] == [(5, "auth.token_url")]


def test_a_header_auth_without_headers_is_refused(tmp_path) -> None:
    with pytest.raises(RulesError) as refused:
        load_spec(write(tmp_path, GOOD.replace("auth: {kind: basic}", "auth: {kind: headers}")))
    assert [(i.line, i.field) for i in refused.value.issues] == [(5, "auth.headers")]


def test_a_find_with_both_a_request_and_recorded_ids_is_refused(tmp_path) -> None:
    text = GOOD.replace("      id: sid\n", "      id: sid\n      recorded: {conn_id: app_db, table: objects, "
                        "id_column: object_id, account_column: account_id}\n")
    with pytest.raises(RulesError) as refused:
        load_spec(write(tmp_path, text))
    assert [(i.field, i.message) for i in refused.value.issues] == [
        ("resources.recordings.find", "give either request (with pagination) or recorded, not both")]
