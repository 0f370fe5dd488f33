"""Customer accounts as the resolver sees them: state, jurisdiction, the dated events rules anchor on.

The account registry of a real deployment is the application's own database; the file-backed one here
(``accounts.yaml``) serves the embedded stack, the demo and tests, validated as strictly as the rules.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import pendulum
from pydantic import BeforeValidator, Field, PlainSerializer, model_validator

from retention.ids import ACCOUNT_ID
from retention.rules.consistency import check_instructions
from retention.rules.errors import Issue, RulesError
from retention.rules.loader import RuleSet, load_model
from retention.rules.model import AccountState, Anchor, Duration, Election, Identifier, Strict


def parse_utc(value: object) -> pendulum.DateTime:
    """A timezone-aware instant in UTC. A date means its midnight UTC; a naive date-time is refused."""
    if isinstance(value, pendulum.DateTime):
        return value.in_timezone("UTC")
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
        raise ValueError(f"{value!r} has no timezone; add one, e.g. {value}Z")
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
            raise ValueError("a terminated account needs terminated_at and the customer's election (delete or return)")
        if not terminated and self.terminated_at is not None:
            raise ValueError(f"terminated_at is set but the state is {self.state.value!r}")
        return self

    def event(self, anchor: Anchor) -> pendulum.DateTime | None:
        return {Anchor.TERMINATED_AT: self.terminated_at, Anchor.CONTRACT_END: self.contract_end}.get(anchor)


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
