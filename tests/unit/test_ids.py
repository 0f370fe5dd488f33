"""One account-id rule for the registry, offboarding requests, DAG params and store selectors: never
empty, ``.``, ``..`` or dot-led (``Selector(None)`` matched ``account_id IS NULL``; ``..`` in a path
climbs to the parent resource)."""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field, ValidationError

from retention import ids
from retention.ids import ACCOUNT_ID, check_account_id, is_account_id
from retention.offboarding.request import OffboardingRequest, RequestError, parse_request
from retention.rules.accounts import load_accounts
from retention.rules.errors import RulesError
from retention.stores.base import Selector

REPO = Path(__file__).resolve().parents[2]
NOT_IDS = ["", ".", "..", ".hidden", "acct:1001", "acct/1001", "acct 1001", "acct_1\n", "a" * 65, "é"]
IDS = ["acct_1001", "a", "A-1", "acct.1", "a..b", "_x", "-x", "9" * 64]


@pytest.mark.parametrize("value", NOT_IDS + [None, 1001])
def test_check_account_id_refuses_and_names_the_field(value) -> None:
    with pytest.raises(ValueError, match=r"^conf\.account_id: "):
        check_account_id(value, "conf.account_id")


@pytest.mark.parametrize("value", IDS)
def test_check_account_id_takes_an_id(value) -> None:
    assert check_account_id(value, "x") == value


@pytest.mark.parametrize("value", [None, "", ".", "..", ".x"])
def test_a_selector_refuses_a_missing_or_relative_account(value) -> None:
    # Selector(None) used to select account_id IS NULL: every orphan row of the table.
    with pytest.raises(ValueError, match="account_id"):
        Selector(value)
    with pytest.raises(ValueError, match="account_id"):
        Selector(value, "created_at", datetime(2025, 1, 1, tzinfo=UTC))


def test_a_selector_takes_an_account_id() -> None:
    assert Selector("acct_1001").account_id == "acct_1001"


ACCOUNTS = """\
accounts:
  - id: acct_1
    state: active
    jurisdiction: {jurisdiction}
    created_at: 2024-01-01T00:00:00Z
  - id: "{bad}"
    state: active
    jurisdiction: {jurisdiction}
    created_at: 2024-01-01T00:00:00Z
"""


@pytest.mark.parametrize("bad", ["..", ".", ".acct", "", "acct:1"])
def test_the_account_registry_refuses_a_bad_id_at_its_line(tmp_path, bad) -> None:
    path = tmp_path / "accounts.yaml"
    path.write_text(ACCOUNTS.format(bad=bad, jurisdiction="eea"))
    with pytest.raises(RulesError) as refused:
        load_accounts(path, {"eea"})
    assert [(i.line, i.field) for i in refused.value.issues] == [(6, "accounts[1].id")]


def test_offboarding_requests_use_the_one_pattern() -> None:
    metadata = OffboardingRequest.model_fields["account_id"].metadata
    assert [m.pattern for m in metadata if hasattr(m, "pattern")] == [ACCOUNT_ID]
    for bad in ("..", ".", ""):
        with pytest.raises(RequestError, match="conf.account_id"):
            parse_request({"account_id": bad, "choice": "delete", "reference": "r"})


def _dag_module(name: str):
    spec = importlib.util.spec_from_file_location(f"_dag_{name}", REPO / "dags" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_subprocessor_erasure_param_uses_the_one_pattern() -> None:
    from airflow.sdk import Param
    from airflow.sdk.definitions.param import ParamValidationError

    dag = _dag_module("subprocessor_erasure").subprocessor_erasure()
    param = dag.params.get_param("account_id")
    assert param.schema["pattern"] == ACCOUNT_ID
    for bad in ("..", ".", ""):
        with pytest.raises(ParamValidationError):
            Param(bad, **param.schema).resolve()


class _Model(BaseModel):
    account_id: str = Field(pattern=ACCOUNT_ID)


@settings(deadline=None)
@given(st.text(alphabet=st.sampled_from("aZ09_-.:/ \n\té"), max_size=70))
def test_python_pydantic_and_json_schema_agree(value: str) -> None:
    """One pattern, three regex engines: Python's fullmatch and pydantic-core's Rust regex agree exactly. The
    jsonschema package (Airflow's Param validation) runs Python's ``re.search``, whose ``$`` also matches
    before one trailing newline; such a Param value is refused downstream by ``check_account_id``
    (selectors, subprocessor calls), tested below."""
    python = is_account_id(value)
    try:
        _Model(account_id=value)
        pydantic = True
    except ValidationError:
        pydantic = False
    try:
        jsonschema.validate(value, {"type": "string", "pattern": ACCOUNT_ID})
        schema = True
    except jsonschema.ValidationError:
        schema = False
    assert python == pydantic, value
    assert schema == (python or (value.endswith("\n") and is_account_id(value[:-1]))), value


@settings(deadline=None)
@given(st.text(max_size=70))
def test_an_id_is_never_empty_dot_or_dot_led(value: str) -> None:
    if is_account_id(value):
        assert value not in ("", ".", "..") and not value.startswith(".")
        assert "/" not in value and ":" not in value and len(value) <= 64
        assert Selector(value).account_id == value
    else:
        with pytest.raises(ValueError):
            Selector(value)


@settings(deadline=None)
@given(st.from_regex(ids.ACCOUNT_ID_PATTERN, fullmatch=True))
def test_every_string_the_pattern_generates_is_an_id(value: str) -> None:
    assert check_account_id(value) == value
