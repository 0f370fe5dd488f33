"""The retry policy every DAG's tasks share: the real exception types, decided by the policy's own evaluate()."""

from __future__ import annotations

import importlib
from datetime import timedelta

import botocore.exceptions
import httpx
import psycopg
import pytest
import redis.exceptions
import sqlalchemy.exc
from airflow.providers.standard.exceptions import HITLTimeoutError
from airflow.sdk import RetryAction

from retention.dagkit.retry import RETRY_POLICY
from retention.engine.executor import HeldMidBatch, NotPermitted
from retention.engine.tasks import SweepFailed, TerminationsOverdue
from retention.ledger.chain import PayloadError
from retention.ledger.checkpoints import CheckpointInvalid
from retention.ledger.database import LedgerSchemaError
from retention.ledger.fields import FieldError
from retention.ledger.guard import PersonalDataError
from retention.ledger.roles import LedgerRoleError
from retention.ledger.runs import ClaimLost, TaskBusy
from retention.ledger.transactions import LedgerBusy
from retention.offboarding.request import RequestError
from retention.offboarding.tasks import ApprovalNotPermitted, SelfApproval
from retention.rules.errors import Issue, RulesError
from retention.rules.resolver import ResolutionError
from retention.stores.base import BatchLocked
from retention.subprocessors.context import Held
from retention.subprocessors.errors import (
    CallDeadlineExceeded,
    CredentialsRefused,
    RecordsBoundExceeded,
    SubprocessorError,
)
from retention.subprocessors.http import Retryable

REFUSALS = [
    HeldMidBatch(["hold_1"]),
    Held(["hold_1"]),
    NotPermitted("run r1 waits for its approval"),
    SelfApproval("the requester cannot approve"),
    ApprovalNotPermitted("role viewer cannot approve"),
    SweepFailed("sweep r1 failed; mass deletion at sql:chats"),
    RecordsBoundExceeded("twilio/messages: account acct_1001 has at least 51 matching records, more than max_records"),
    RulesError([Issue("rules.yaml", 3, 5, "delete", "an unfiltered delete would erase every customer's data")]),
    ResolutionError("no rule for chat_transcripts"),
    RequestError("ticket: expected a reference"),
    FieldError("confirmed_on: expected an ISO date"),
    PersonalDataError("reason looks like an email address"),
    LedgerSchemaError("the ledger is at revision 0004, this code expects 0005"),
    PayloadError("counts.deleted is a float"),
    CheckpointInvalid("000042.json: signature does not verify"),
    LedgerRoleError("the writer role may not UPDATE events"),
    CredentialsRefused("sendgrid", "the token endpoint refused the client credentials", 401),
    TerminationsOverdue("acct_1001 terminated 2026-10-01, offboarding overdue"),
    HITLTimeoutError({"error": "The Human-in-the-loop response timeout has passed", "error_type": "timeout"}),
]

TRANSIENT = [
    BatchLocked("sql:chats batch 3 met the application's locks", retries=5),
    LedgerBusy("a ledger write waited past its lock timeout"),
    TaskBusy("another executor holds task 7"),
    Retryable("HTTP 429", 30.0),
    httpx.ConnectError("connection refused"),
    httpx.ReadTimeout("read timed out"),
    sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly")),
    psycopg.OperationalError("connection failed"),
    botocore.exceptions.EndpointConnectionError(endpoint_url="http://127.0.0.1:9000"),
    botocore.exceptions.ConnectionClosedError(endpoint_url="http://127.0.0.1:9000"),
    botocore.exceptions.ReadTimeoutError(endpoint_url="http://127.0.0.1:9000"),
    redis.exceptions.ConnectionError("Connection refused"),
    redis.exceptions.TimeoutError("Timeout reading from socket"),
    ConnectionResetError("reset by peer"),  # builtins.ConnectionError's subclasses count
    TimeoutError("timed out"),
]

# Named by no rule: the task's own retries decide.
STANDARD = [
    SubprocessorError("sendgrid: delete still failing after 5 tries"),
    CallDeadlineExceeded("sendgrid: delete reached the call deadline"),
    ClaimLost("task 7 was claimed by another executor"),
    KeyError("location"),
    RuntimeError("anything else"),
]


def decide(exc: BaseException):
    return RETRY_POLICY.evaluate(exc, try_number=1, max_tries=3)


@pytest.mark.parametrize("exc", REFUSALS, ids=lambda e: type(e).__name__)
def test_a_refusal_fails_at_once(exc) -> None:
    decision = decide(exc)
    assert decision.action is RetryAction.FAIL, decision
    assert decision.reason  # logged with the failure: says why no retry


@pytest.mark.parametrize("exc", TRANSIENT, ids=lambda e: type(e).__name__)
def test_a_transient_fault_is_retried_after_a_delay(exc) -> None:
    decision = decide(exc)
    assert decision.action is RetryAction.RETRY, decision
    assert decision.retry_delay is not None and decision.retry_delay >= timedelta(seconds=30)


@pytest.mark.parametrize("exc", STANDARD, ids=lambda e: type(e).__name__)
def test_anything_else_takes_the_standard_retries(exc) -> None:
    assert decide(exc).action is RetryAction.DEFAULT


def test_a_refusal_that_is_also_a_connection_error_still_fails() -> None:
    """First match wins and subclasses match: the refusals are checked before the transient faults."""
    class HeldWhileReconnecting(Held, ConnectionError):
        pass

    assert decide(HeldWhileReconnecting(["hold_1"])).action is RetryAction.FAIL
    assert decide(ConnectionError("reset")).action is RetryAction.RETRY


def resolve(path: str) -> type[BaseException]:
    """The class a rule's dotted path names; raises on a typo (Airflow itself only logs a warning)."""
    module, _, name = path.rpartition(".")
    found = getattr(importlib.import_module(module), name)
    if not (isinstance(found, type) and issubclass(found, BaseException)):
        raise TypeError(f"{path} is not an exception class")
    return found


def test_every_dotted_path_in_the_rules_imports() -> None:
    paths = [p for rule in RETRY_POLICY.rules
             for p in (lambda e: e if isinstance(e, list) else [e])(rule.serialize()["exception"])]
    assert len(paths) == len(set(paths)) > 30
    classes = {path: resolve(path) for path in paths}
    assert classes["builtins.ConnectionError"] is ConnectionError
    assert classes["httpx.TransportError"] is httpx.TransportError
    with pytest.raises(AttributeError):
        resolve("retention.engine.executor.HeldMidBach")  # a typo is caught by the check above


def test_the_policy_survives_airflow_serialization() -> None:
    """The scheduler stores the policy with the DAG: what it reads back decides the same way."""
    again = type(RETRY_POLICY).deserialize(RETRY_POLICY.serialize())
    for exc in (Held(["hold_1"]), LedgerBusy("busy"), KeyError("x")):
        assert again.evaluate(exc, 1, 3) == RETRY_POLICY.evaluate(exc, 1, 3)
