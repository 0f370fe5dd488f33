"""A data subject request as it is filed (the DAG's Params, the customer API's body, the CLI's options),
validated whole before anything is looked up; errors name the field (``conf.identifiers.email``), never a value."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated, Any

import pendulum
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from retention.ids import ACCOUNT_ID
from retention.ledger.fields import TICKET_MAX, TICKET_REFERENCE
from retention.offboarding.request import AGE_RECIPIENT
from retention.rules.model import Strict
from retention.rules.subjects import MAX_VALUES, IdentifierKind, Regime, RequestType, Subject


class RequestError(ValueError):
    """The request is invalid; the message names every bad field. Nothing has been looked up or touched."""


class SubjectRequestSpec(Strict):
    account_id: Annotated[str, Field(pattern=ACCOUNT_ID)]
    request_type: RequestType
    identifiers: dict[IdentifierKind, Annotated[list[str], Field(min_length=1, max_length=MAX_VALUES)]] = \
        Field(min_length=1)
    # The customer's own reference for the request: kept erasable, the chain gets its digest; a ticket's shape.
    reference: Annotated[str, Field(max_length=TICKET_MAX, pattern=TICKET_REFERENCE)]
    received_on: date  # the day the customer received the request: its legal deadline counts from it
    regime: Regime | None = None  # None: from the account's jurisdiction (retention.rules.subjects.regime_of)
    # An access request's package is encrypted to the customer's age public key (as a termination's return is).
    recipient: Annotated[str, Field(pattern=AGE_RECIPIENT)] | None = None

    @field_validator("identifiers")
    @classmethod
    def _normalized(cls, identifiers: dict[str, list[str]]) -> dict[str, list[str]]:
        return Subject.of(identifiers).as_dict()  # a ValueError names the kind, never the value

    @field_validator("received_on")
    @classmethod
    def _received_already(cls, received: date) -> date:
        """A request received later than tomorrow (UTC, for the customer's time zone) is a typo: its deadline would
        lie so far ahead that no alert would ever come."""
        if received > pendulum.today("UTC").date() + timedelta(days=1):
            raise ValueError("the day the request was received lies in the future")
        return received

    @model_validator(mode="after")
    def _recipient_for_access_only(self) -> SubjectRequestSpec:
        if self.request_type == "access" and self.recipient is None:
            raise ValueError("recipient: an access request's package is encrypted for the customer; give its age "
                             "public key (age1...)")
        if self.request_type == "erasure" and self.recipient is not None:
            raise ValueError("recipient: an erasure request returns nothing; leave it out")
        return self

    @property
    def subject(self) -> Subject:
        return Subject.of(self.identifiers)


def parse_subject_request(conf: dict[str, Any], where: str = "conf") -> SubjectRequestSpec:
    """The request, or a RequestError naming each field as ``<where>.<field>: <problem>``."""
    try:
        return SubjectRequestSpec.model_validate({k: v for k, v in conf.items() if v is not None})
    except ValidationError as exc:
        raise RequestError("invalid subject request: " + "; ".join(_describe(e, where) for e in exc.errors())) \
            from None


def _describe(error: ErrorDetails, where: str) -> str:
    field = ".".join(map(str, error["loc"]))
    problem = str(error.get("ctx", {}).get("error") or error["msg"])
    return f"{where}.{field}: {problem}" if field else f"{where}.{problem}"  # a whole-request check names its field
