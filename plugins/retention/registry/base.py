"""What a run gets from the account registry, whatever the source: the accounts accepted, the rows refused (per
account, with a reason code), and the digests the ledger keeps so a certificate can say which state it acted on."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from retention.ledger.chain import canonical_json
from retention.rules import Account, RuleSet
from retention.rules.accounts import RowProblem, account_from_row, row_account_id


@dataclass(frozen=True)
class Rejected:
    """One registry row the run did not act on: nothing of that account is planned, kept or deleted by it."""

    account_id: str | None  # None when the row's own id is what is wrong (then ``row`` says which)
    reason: str  # a code from retention.rules.accounts.REASONS ("unknown_state", ...): never row text
    field: str  # the column or key at fault
    row: str  # where the row is: "sql:app_db/accounts row 4711", "http:app_api/v1/accounts page 2 item 3"

    def as_dict(self) -> dict[str, str | None]:
        return {"account_id": self.account_id, "reason": self.reason, "field": self.field}


@dataclass(frozen=True)
class Registry:
    accounts: dict[str, Account]
    source: str  # what was read, without credentials: "file:accounts.yaml", "sql:app_db/accounts", ...
    rejected: tuple[Rejected, ...] = ()
    # None: the whole registry. An account id: this holds that account's entry only (its accepted row, or its
    # refused rows), as a data subject request reads it (``load_registry(..., account_id=)``, ``only``).
    scope: str | None = None

    def only(self, account_id: str) -> Registry:
        """This registry narrowed to one account's entry: what a data subject request acts on."""
        accounts = {account_id: self.accounts[account_id]} if account_id in self.accounts else {}
        return Registry(accounts, self.source, tuple(r for r in self.rejected if r.account_id == account_id),
                        scope=account_id)

    @property
    def sha256(self) -> str:
        """Digest of the accepted accounts as the resolver saw them (ids, states, dates, elections, instructions)."""
        rows = [account.model_dump(mode="json") for _, account in sorted(self.accounts.items())]
        return hashlib.sha256(canonical_json(rows).encode()).hexdigest()

    def knows(self, account_id: str) -> bool:
        """The account has a row: accepted, or refused (it exists, and a hold on it must be possible)."""
        return account_id in self.accounts or any(r.account_id == account_id for r in self.rejected)

    def entry_sha256(self, account_id: str) -> str:
        """Digest of one account's entry, as ``sha256`` digests each: what a termination acted on for it."""
        return hashlib.sha256(canonical_json(self.accounts[account_id].model_dump(mode="json")).encode()).hexdigest()

    def snapshot(self, account_id: str | None = None) -> dict[str, Any]:
        """The ledger's ``registry.snapshot`` payload: counts, digest, and the refused rows by id and reason code;
        with ``account_id``, that account's own entry digest too (an offboarding acts on one account). A registry
        of one account's entry (``scope``) says so: ``"scope": {"account_id": ...}``, and its count (0 or 1), digest
        and refused rows are that entry's, not the whole registry's."""
        payload: dict[str, Any] = {"source": self.source, "accounts": len(self.accounts), "sha256": self.sha256,
                                   "rejected": [r.as_dict() for r in self.rejected]}
        if self.scope is not None:
            payload["scope"] = {"account_id": self.scope}
        if account_id is not None and account_id in self.accounts:
            payload["account"] = {"account_id": account_id, "sha256": self.entry_sha256(account_id)}
        return payload

    def summary(self) -> str:
        """One line for a log or a report: how many accounts from where, which rows were refused and why."""
        return summary_text(self.snapshot())


def summary_text(snapshot: Mapping[str, Any]) -> str:
    """A ``registry.snapshot`` payload in words: "registry: 9,999 accounts from sql:app_db/accounts, 1 row refused:
    acct_x unknown_state (state)"; one account's: "registry: account acct_x only, its entry from ..."."""
    rejected = snapshot.get("rejected") or []
    scope = snapshot.get("scope")
    if scope is not None:  # one account's entry, read by its id (a data subject request)
        found = "its entry" if snapshot["accounts"] else "no accepted entry"
        text = f"registry: account {scope['account_id']} only, {found} from {snapshot['source']}"
    else:
        text = f"registry: {snapshot['accounts']:,} accounts from {snapshot['source']}"
    if not rejected:
        return text + ", no row refused"
    refused = ", ".join(f"{r['account_id'] or '(no valid id)'} {r['reason']} ({r['field']})" for r in rejected)
    return text + f", {len(rejected):,} row{'s' if len(rejected) != 1 else ''} refused: {refused}"


def collect(rows: Iterable[tuple[str, Mapping[str, object]]], ruleset: RuleSet, source: str) -> Registry:
    """The registry from an application's rows, each checked on its own: a bad row is refused with its reason, the
    others stand. Every row of an id that appears more than once is refused (``duplicate_id``): which of them is the
    account's true state is not for the retention tool to guess. ``rows`` is read once, as it streams."""
    accounts: dict[str, Account] = {}
    accepted_at: dict[str, list[str]] = {}  # id -> where each accepted row of it was
    seen: dict[str, int] = {}
    rejected: list[Rejected] = []
    for where, row in rows:
        account_id = row_account_id(row)
        if account_id is not None:
            seen[account_id] = seen.get(account_id, 0) + 1
        result = account_from_row(row, ruleset)
        if isinstance(result, RowProblem):
            rejected.append(Rejected(account_id, result.reason, result.field, f"{source} {where}"))
            continue
        accounts.setdefault(result.id, result)
        accepted_at.setdefault(result.id, []).append(f"{source} {where}")
    for account_id in [a for a in accounts if seen[a] > 1]:
        del accounts[account_id]
        rejected += [Rejected(account_id, "duplicate_id", "id", where) for where in accepted_at[account_id]]
    return Registry(accounts, source, tuple(rejected))
