"""The account registry a run acts on: the accounts read, the rows refused (per account, with a reason), and
a digest the ledger keeps so a certificate can say which account state a run acted on.

A source (``retention.registry.sources``) reads the application's accounts; ``Registry`` is what every run
gets from it, whatever the source.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retention.ledger.chain import canonical_json
from retention.rules import Account, RuleSet, load_accounts
from retention.settings import Settings


@dataclass(frozen=True)
class Rejected:
    """One registry row the run did not act on: nothing of that account is planned, kept or deleted by it."""

    account_id: str | None  # None when the row's own id is what is wrong (then ``row`` says which)
    reason: str  # a code from a fixed vocabulary ("unknown_state", "naive_timestamp", ...): never row text
    field: str  # the column or key at fault
    row: str  # where the row is: "accounts.yaml:12", "app_db accounts row 4711", "GET /accounts item 3"


@dataclass(frozen=True)
class Registry:
    accounts: dict[str, Account]
    source: str  # what was read, without credentials: "file:accounts.yaml", "sql:app_db/accounts", ...
    rejected: tuple[Rejected, ...] = ()

    @property
    def sha256(self) -> str:
        """Digest of the accepted accounts as the resolver saw them (ids, states, dates, elections, instructions)."""
        rows = [account.model_dump(mode="json") for _, account in sorted(self.accounts.items())]
        return hashlib.sha256(canonical_json(rows).encode()).hexdigest()

    def snapshot(self) -> dict[str, Any]:
        """The ledger's ``registry.snapshot`` payload: counts, digest, and the refused rows by id and reason code."""
        return {"source": self.source, "accounts": len(self.accounts), "sha256": self.sha256,
                "rejected": [{"account_id": r.account_id, "reason": r.reason, "field": r.field}
                             for r in self.rejected]}


def load_registry(settings: Settings, ruleset: RuleSet) -> Registry:
    """The registry the settings name. The file source is checked whole: one bad entry refuses the file with
    file:line:field (a hand-edited file is configuration, and nothing runs on a half-read one)."""
    if settings.accounts_file is None:
        raise ValueError("no account registry: set RETENTION_ACCOUNTS_FILE")
    path = Path(settings.accounts_file)
    return Registry(load_accounts(path, ruleset), source=f"file:{path.name}")
