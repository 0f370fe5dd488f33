"""The termination request is validated whole before anything runs; each problem names its conf field."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from retention.cli import main
from retention.offboarding.request import RequestError, parse_request

RECIPIENT = "age1" + "q" * 58
VALID = {"account_id": "acct_1001", "choice": "delete", "reference": "OFF-1"}


def problems(**conf) -> str:
    with pytest.raises(RequestError) as caught:
        parse_request({**VALID, **conf})
    return str(caught.value)


def test_a_valid_request_takes_its_defaults():
    request = parse_request({**VALID, "effective_date": None})
    assert (request.choice.value, request.return_window_days, request.subprocessors) == ("delete", 14, None)


def test_an_unknown_election_is_named():
    assert "conf.choice: " in problems(choice="archive")
    assert "conf.account_id: " in problems(account_id="acct:1001")  # it also names the account's data key


def test_a_return_needs_the_customers_key():
    assert problems(choice="return") == ("invalid offboarding request: conf.return_recipient: a return is encrypted "
                                         "for the customer; give its age public key")
    assert parse_request({**VALID, "choice": "return", "return_recipient": RECIPIENT}).return_recipient == RECIPIENT


def test_every_bad_field_is_named_at_once():
    message = problems(account_id="acct 1001", return_recipient="ssh-ed25519 AAAA", return_window_days=31, colour="red")
    for field in ("conf.account_id:", "conf.return_recipient:", "conf.return_window_days:", "conf.colour:"):
        assert field in message


def test_the_cli_refuses_a_bad_request_before_airflow_sees_it():
    result = CliRunner().invoke(main, ["offboard", "acct_1001", "--choice", "return", "--reference", "OFF-1", "--json"],
                                env={"AIRFLOW_API_TOKEN": "never-used"})
    assert result.exit_code == 1
    assert "conf.return_recipient" in result.output and "dag_run_id" not in result.output


def test_a_typed_requester_is_refused_by_name():
    """Anyone could type anyone's name: the requester is the Airflow user who triggers the run, never the conf's."""
    assert problems(requested_by="staff-42") == (
        "invalid offboarding request: conf.requested_by: not accepted; the requester is the Airflow user who "
        "triggers the run (retention offboard signs in to Airflow's API)")
    result = CliRunner().invoke(main, ["offboard", "acct_1001", "--choice", "delete", "--requested-by", "staff-42",
                                       "--reference", "OFF-1"], env={"AIRFLOW_API_TOKEN": "never-used"})
    assert result.exit_code == 2 and "No such option '--requested-by'" in result.output
