"""An offboarding request as the DAG's conf gives it, validated whole before anything runs, and who asked
for it: the Airflow user who triggered the run, never a name in the conf."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, ValidationError, model_validator
from pydantic_core import ErrorDetails

from retention.ids import ACCOUNT_ID  # the one account-id rule; termination_offboarding's Param imports it from here
from retention.ledger.fields import TICKET_MAX, TICKET_REFERENCE
from retention.rules.accounts import Timestamp
from retention.rules.model import Election, Strict

AGE_RECIPIENT = r"^age1[02-9ac-hj-np-z]{58}$"  # an age X25519 public key (bech32)


class RequestError(ValueError):
    """The conf is invalid; the message names every bad field. Nothing has been touched."""


class OffboardingRequest(Strict):
    account_id: Annotated[str, Field(pattern=ACCOUNT_ID)]
    choice: Election  # the customer's election under DPA 7(b) / SCC Clause 12
    # The ticket: it enters the hash chain, so a ticket's shape only (retention.ledger.fields), never words.
    reference: Annotated[str, Field(max_length=TICKET_MAX, pattern=TICKET_REFERENCE)]
    effective_date: Timestamp | None = None  # when the contract ends; default: now
    return_recipient: Annotated[str, Field(pattern=AGE_RECIPIENT)] | None = None  # the customer's age key
    # DPA Annex 1 §1(d) says deletion follows "upon termination" and names no number of days: the 30-day
    # ceiling on the customer's window to confirm a return is the processor's policy, not the contract's.
    return_window_days: Annotated[int, Field(ge=0, le=30)] = 14
    subprocessors: list[str] | None = None  # which subprocessors to erase at; None: every connector spec

    @model_validator(mode="after")
    def _return_needs_a_recipient(self) -> OffboardingRequest:
        if self.choice is Election.RETURN and self.return_recipient is None:
            raise ValueError("return_recipient: a return is encrypted for the customer; give its age public key")
        return self


def parse_request(conf: dict[str, Any]) -> OffboardingRequest:
    """The request, or a RequestError naming each field as ``conf.<field>: <problem>``."""
    if "requested_by" in conf:  # once a typed name; anyone could claim to be anyone
        raise RequestError("invalid offboarding request: conf.requested_by: not accepted; the requester is the "
                           "Airflow user who triggers the run (retention offboard signs in to Airflow's API)")
    try:
        return OffboardingRequest.model_validate({k: v for k, v in conf.items() if v is not None})
    except ValidationError as exc:
        raise RequestError("invalid offboarding request: " + "; ".join(map(_describe, exc.errors()))) from None


def requester(dag_run: object) -> str:
    """The staff id of who asked for this run: ``api:<user name>`` of the Airflow user who triggered it.

    Airflow's REST API (and the UI, which uses it) sets ``triggering_user_name`` from the caller's JWT
    (``user.get_name()``); the run exposes the name, not the id. With SimpleAuthManager both are the username,
    so this is the same staff id ``api/operators.py`` records for holds. A run nobody triggered (the scheduler,
    an internal trigger) has no user: it is refused, so four eyes always compares two real identities."""
    name = getattr(dag_run, "triggering_user_name", None)
    if not name:
        raise RequestError("no requester: the run has no triggering Airflow user; trigger it "
                           "through Airflow's REST API or UI (retention offboard does) so that the requester is "
                           "the signed-in user")
    return f"api:{name}"


def _describe(error: ErrorDetails) -> str:
    """``conf.<field>: <problem>``; a whole-request check names its field at the start of its message."""
    where = ".".join(map(str, error["loc"]))
    problem = str(error.get("ctx", {}).get("error") or error["msg"])
    return f"conf.{where}: {problem}" if where else f"conf.{problem}"
