"""Customer accounts as the resolver sees them: state, jurisdiction, the dated events rules anchor on.

The account registry of a real deployment is the application's own database (``retention.registry``); the
file-backed one here (``accounts.yaml``) serves the embedded stack, the demo and tests, validated as strictly as
the rules and refused whole. A row read from an application is checked on its own (``account_from_row``): a bad
row is refused with a reason code from ``REASONS``, and the rest of the registry stands.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Literal

import pendulum
from pydantic import BeforeValidator, Field, PlainSerializer, ValidationError, model_validator
from pydantic_core import ErrorDetails

from retention.ids import ACCOUNT_ID, is_account_id
from retention.rules.consistency import check_instructions, instruction_problems
from retention.rules.errors import Issue, RulesError
from retention.rules.loader import RuleSet, load_model
from retention.rules.model import AccountState, Anchor, Duration, Election, Identifier, Strict


class NaiveTimestamp(ValueError):
    """A date-time without a timezone: its instant is unknown, so nothing may be decided from it."""


def parse_utc(value: object) -> pendulum.DateTime:
    """A timezone-aware instant in UTC. A date means its midnight UTC; a naive date-time is refused."""
    if isinstance(value, pendulum.DateTime):
        return value.in_timezone("UTC")
    if isinstance(value, datetime):  # a database driver's value (timestamptz, or a naive timestamp)
        if value.tzinfo is None or value.utcoffset() is None:
            raise NaiveTimestamp(f"{value.isoformat()!r} has no timezone")
        return pendulum.instance(value).in_timezone("UTC")
    if isinstance(value, date):
        return pendulum.datetime(value.year, value.month, value.day, tz="UTC")
    if not isinstance(value, str):
        raise ValueError(f"expected an ISO-8601 timestamp string, got {type(value).__name__}")
    try:
        parsed = pendulum.parse(value, exact=True, strict=True, tz=None)  # tz=None: do not assume UTC
    except (pendulum.parsing.exceptions.ParserError, ValueError) as exc:
        raise ValueError(f"{value!r} is not an ISO-8601 date or timestamp") from exc
    if isinstance(parsed, pendulum.Date) and not isinstance(parsed, pendulum.DateTime):
        return pendulum.datetime(parsed.year, parsed.month, parsed.day, tz="UTC")
    if not isinstance(parsed, pendulum.DateTime):
        raise ValueError(f"{value!r} is not a date or timestamp")
    if parsed.tzinfo is None:
        raise NaiveTimestamp(f"{value!r} has no timezone; add one, e.g. {value}Z")
    return parsed.in_timezone("UTC")


Timestamp = Annotated[pendulum.DateTime, BeforeValidator(parse_utc), PlainSerializer(lambda d: d.isoformat())]


class CustomerElection(Strict):
    """The customer's choice under DPA 7(b) and SCC Clause 12, and when it was given."""

    choice: Election
    elected_at: Timestamp


class Account(Strict):
    id: Annotated[str, Field(pattern=ACCOUNT_ID)]  # one rule for every account id: retention.ids
    state: AccountState
    jurisdiction: str
    created_at: Timestamp
    contract_end: Timestamp | None = None
    terminated_at: Timestamp | None = None
    election: CustomerElection | None = None
    customer: Annotated[str, Field(min_length=1, max_length=200)] | None = None  # the data exporter, a company
    scc: Literal["2010/87/EU", "2021/914"] | None = None  # the transfer clauses the contract incorporates
    # The customer's own instructions (DPA 3): data class -> retention period for this account. Each replaces
    # the rule's period, and a contract override's, where the rule has override_bounds and within them.
    instructions: dict[Identifier, Duration] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _termination_is_complete(self) -> Account:
        terminated = self.state is AccountState.TERMINATED
        if terminated and (self.terminated_at is None or self.election is None):
            missing = "election" if self.election is None else "terminated_at"
            raise TerminationIncomplete(f"missing_{missing}", missing,
                                        "a terminated account needs terminated_at and the customer's election "
                                        "(delete or return)")
        if not terminated and self.terminated_at is not None:
            raise TerminationIncomplete("terminated_at_not_terminated", "terminated_at",
                                        f"terminated_at is set but the state is {self.state.value!r}")
        return self

    def event(self, anchor: Anchor) -> pendulum.DateTime | None:
        return {Anchor.TERMINATED_AT: self.terminated_at, Anchor.CONTRACT_END: self.contract_end}.get(anchor)


class TerminationIncomplete(ValueError):
    """A termination the registry states only in part: which field, under which reason code."""

    def __init__(self, reason: str, field: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.field = reason, field


class AccountsFile(Strict):
    accounts: list[Account]


def load_accounts(path: Path | str, rules: RuleSet | set[str]) -> dict[str, Account]:
    """Read and check the registry. Given the RuleSet, every instruction is checked against the rules too
    (known class, within its rule's bounds); given only the known jurisdictions, instructions are checked for
    form (a positive ISO-8601 period) and the resolver still clamps them into the rule's bounds."""
    ruleset: RuleSet | None = None
    if isinstance(rules, RuleSet):
        ruleset, known_jurisdictions = rules, set(rules.jurisdictions.jurisdictions)
    else:
        known_jurisdictions = set(rules)
    model, smap = load_model(Path(path), AccountsFile)
    issues: list[Issue] = []
    seen: set[str] = set()
    for i, account in enumerate(model.accounts):
        if account.jurisdiction not in known_jurisdictions:
            issues.append(smap.issue(("accounts", i, "jurisdiction"), f"unknown jurisdiction {account.jurisdiction!r}",
                                     f"known: {', '.join(sorted(known_jurisdictions))}"))
        if account.id in seen:
            issues.append(smap.issue(("accounts", i, "id"), f"duplicate account id {account.id!r}"))
        seen.add(account.id)
        if ruleset is not None:
            issues += check_instructions(("accounts", i, "instructions"), account.instructions, smap, ruleset)
    if issues:
        raise RulesError(issues)
    return {account.id: account for account in model.accounts}


# --- one row of an application's registry (database or HTTP source) ---------------------------------------------

# Why a row is refused: codes only, so nothing of the row's own text (personal data, free text) reaches a log,
# the ledger or a report.
REASONS = frozenset({
    "bad_id", "duplicate_id", "unknown_state", "unknown_jurisdiction", "naive_timestamp", "bad_timestamp",
    "missing_field", "missing_election", "missing_terminated_at", "terminated_at_not_terminated",
    "unknown_election", "bad_instruction", "bad_customer", "bad_scc", "bad_value",
})
ROW_FIELDS = ("id", "state", "jurisdiction", "created_at", "contract_end", "terminated_at", "election", "elected_at",
              "customer", "scc", "instructions")  # a row's keys: the Account's fields, the election flattened
_TIMESTAMPS = frozenset({"created_at", "contract_end", "terminated_at", "elected_at"})
_BY_FIELD = {"id": "bad_id", "state": "unknown_state", "customer": "bad_customer", "scc": "bad_scc",
             "instructions": "bad_instruction"}


@dataclass(frozen=True)
class RowProblem:
    """Why one registry row was refused: a code from ``REASONS`` and the field at fault (never the value)."""

    reason: str
    field: str


def row_account_id(row: Mapping[str, object]) -> str | None:
    """The row's account id if it is one (``retention.ids.ACCOUNT_ID``); None when the id itself is wrong."""
    value = row.get("id")
    return value if is_account_id(value) else None


def account_from_row(row: Mapping[str, object], ruleset: RuleSet) -> Account | RowProblem:
    """One row of an application's registry as an Account, or why it is refused. Keys are ``ROW_FIELDS`` (others
    are ignored); the election comes as ``election`` (delete or return) and ``elected_at``, instructions as a JSON
    object (or its text) of data class -> ISO-8601 period, checked against the rules."""
    if row_account_id(row) is None:
        return RowProblem("bad_id", "id")
    data = {name: row[name] for name in ROW_FIELDS if name in row and row[name] is not None}
    choice, elected_at = data.pop("election", None), data.pop("elected_at", None)
    if choice is not None or elected_at is not None:
        if choice is None or elected_at is None:
            return RowProblem("missing_election", "election" if choice is None else "elected_at")
        data["election"] = {"choice": choice, "elected_at": elected_at}
    if isinstance(data.get("instructions"), str):
        try:
            data["instructions"] = json.loads(str(data["instructions"]))
        except ValueError:
            return RowProblem("bad_instruction", "instructions")
    try:
        account = Account.model_validate(data)
    except ValidationError as exc:
        return _problem(exc.errors()[0])
    if account.jurisdiction not in ruleset.jurisdictions.jurisdictions:
        return RowProblem("unknown_jurisdiction", "jurisdiction")
    for name, *_ in instruction_problems(account.instructions, ruleset):
        return RowProblem("bad_instruction", f"instructions.{name}")
    return account


def _problem(error: ErrorDetails) -> RowProblem:
    """The reason code of pydantic's first complaint about a row."""
    loc = [str(part) for part in error["loc"]]
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, TerminationIncomplete):
        return RowProblem(cause.reason, cause.field)
    field = "elected_at" if loc[:2] == ["election", "elected_at"] else "election" if loc[:1] == ["election"] \
        else loc[0] if loc else "(row)"
    if error["type"] == "missing":
        return RowProblem("missing_field", field)
    if field in _TIMESTAMPS:
        return RowProblem("naive_timestamp" if isinstance(cause, NaiveTimestamp) else "bad_timestamp", field)
    if field == "election":
        return RowProblem("unknown_election", field)
    return RowProblem(_BY_FIELD.get(field, "bad_value"), ".".join(loc[:1]) if field == "instructions" else field)
