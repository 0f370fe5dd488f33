"""Where the product finds its inputs. One place, read from the environment, used by DAGs and CLI alike."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    rules_dir: Path
    accounts_file: Path | None  # the account registry (a file in the embedded stack)
    database_url: str | None  # the ledger; None: SQLite under $RETENTION_HOME

    @property
    def systems_file(self) -> Path:
        return self.rules_dir / "systems.yaml"

    @classmethod
    def from_env(cls, **overrides) -> "Settings":
        accounts = os.environ.get("RETENTION_ACCOUNTS_FILE")
        values = {
            "rules_dir": Path(os.environ.get("RETENTION_RULES_DIR", "retention_rules")),
            "accounts_file": Path(accounts) if accounts else None,
            "database_url": os.environ.get("RETENTION_DATABASE_URL"),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)
