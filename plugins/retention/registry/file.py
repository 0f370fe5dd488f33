"""The file source: ``accounts.yaml`` (the demo, tests, and the ``--accounts`` option). Checked whole, as a rule
file is: one bad entry refuses the file with file:line:field, since a hand-edited file is configuration and
nothing runs on a half-read one."""

from __future__ import annotations

from pathlib import Path

from retention.registry.base import Registry
from retention.rules import RuleSet, load_accounts


def read_file(path: Path, ruleset: RuleSet) -> Registry:
    return Registry(load_accounts(path, ruleset), source=f"file:{path.name}")
