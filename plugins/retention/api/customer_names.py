"""Customer names beside account ids, for every staff route that shows accounts: one read of the account registry
per answer, never one per row. A name is the registry's ``customer`` (the data exporter), None when the account has
none or the registry does not know the account."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from retention.registry import load_registry
from retention.rules import Account, load_ruleset
from retention.settings import Settings

_log = logging.getLogger(__name__)

Names = dict[str, str | None]  # account id -> customer name or None


def customers_of(accounts: Mapping[str, Account], account_ids: Iterable[str | None]) -> Names:
    """The customer of each account named (None ids, as a class-wide hold's, are skipped)."""
    return {account_id: account.customer if (account := accounts.get(account_id)) else None
            for account_id in account_ids if account_id is not None}


def registry_accounts() -> Mapping[str, Account]:
    """The registry's accounts, for their names. A view must still answer when the registry cannot be read (the
    application's database is down): then no names, ids alone, and a warning naming the error's type only."""
    settings = Settings.from_env()
    try:
        return load_registry(settings, load_ruleset(settings.rules_dir)).accounts
    except Exception as exc:  # noqa: BLE001 - any source's failure: the view shows ids without names
        _log.warning("customer names not shown: the account registry could not be read (%s)", type(exc).__name__)
        return {}
