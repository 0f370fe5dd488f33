"""The account registry a run acts on: the application's accounts, read through the source ``registry.yaml``
names (its database, an HTTP endpoint, or a file), each row checked on its own.

``RETENTION_ACCOUNTS_FILE`` (tests, the demo's tools, the CLI's ``--accounts``) wins over ``registry.yaml``.
Sweeps and offboardings read the whole registry; a data subject request's steps read their account's entry only.
Every refused row is logged (one WARNING, account id and reason code) and kept in ``Registry.rejected``; the
run's ``registry.snapshot`` event records them with the count and digest of what was accepted.
"""

from __future__ import annotations

import logging

from retention.registry.base import Registry, Rejected, summary_text
from retention.registry.config import load_config
from retention.registry.file import read_file
from retention.rules import RuleSet
from retention.settings import Settings

__all__ = ["Registry", "Rejected", "load_registry", "summary_text"]

log = logging.getLogger(__name__)


def load_registry(settings: Settings, ruleset: RuleSet, account_id: str | None = None) -> Registry:
    """The registry the settings name: the accounts file if one is set, else ``registry.yaml``'s source. With
    ``account_id``, only that account's entry (``Registry.scope``), as a data subject request acts on one account:
    the SQL source reads that id alone, the others read everything and keep the account."""
    if settings.accounts_file is not None:
        registry = read_file(settings.accounts_file, ruleset)
        if account_id is not None:
            registry = registry.only(account_id)
    else:
        path = settings.registry_path
        if not path.is_file():
            raise ValueError(f"no account registry: {path} does not exist (RETENTION_REGISTRY_FILE); name a source "
                             "there, or set RETENTION_ACCOUNTS_FILE to an accounts.yaml")
        source = load_config(path).source
        registry = (source.read(ruleset, path.parent) if account_id is None
                    else source.read_account(ruleset, path.parent, account_id))
    for refused in registry.rejected:
        log.warning("registry row refused: account %s, %s (%s) at %s; nothing of it is planned or deleted",
                    refused.account_id or "(no valid id)", refused.reason, refused.field, refused.row)
    log.info("%s", registry.summary())
    return registry
