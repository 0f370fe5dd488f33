"""The account registry a run acts on: the application's accounts, read through the source ``registry.yaml``
names (its database, an HTTP endpoint, or a file), each row checked on its own.

``RETENTION_ACCOUNTS_FILE`` (tests, the demo's tools, the CLI's ``--accounts``) wins over ``registry.yaml``.
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


def load_registry(settings: Settings, ruleset: RuleSet) -> Registry:
    """The registry the settings name: the accounts file if one is set, else ``registry.yaml``'s source."""
    if settings.accounts_file is not None:
        registry = read_file(settings.accounts_file, ruleset)
    else:
        path = settings.registry_path
        if not path.is_file():
            raise ValueError(f"no account registry: {path} does not exist (RETENTION_REGISTRY_FILE); name a source "
                             "there, or set RETENTION_ACCOUNTS_FILE to an accounts.yaml")
        registry = load_config(path).source.read(ruleset, path.parent)
    for refused in registry.rejected:
        log.warning("registry row refused: account %s, %s (%s) at %s; nothing of it is planned or deleted",
                    refused.account_id or "(no valid id)", refused.reason, refused.field, refused.row)
    log.info("%s", registry.summary())
    return registry
