"""Where the product finds its inputs. One place, read from the environment, used by DAGs and CLI alike."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    rules_dir: Path
    accounts_file: Path | None  # the account registry (a file in the embedded stack)
    database_url: str | None  # the ledger; None: SQLite under $RETENTION_HOME
    home: Path = Path("var")  # what the product writes: the default ledger, issued certificates
    jwks_file: Path | None = None  # the published public keys, current and retired
    signing_key_file: Path | None = None  # None: the Airflow Connection retention_signing_key
    link_secret: str | None = field(default=None, repr=False)  # signs the customers' download links

    @property
    def certificates_dir(self) -> Path:
        return self.home / "certificates"

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
            "home": Path(os.environ.get("RETENTION_HOME", "var")),
            "jwks_file": _path(os.environ.get("RETENTION_JWKS_FILE")),
            "signing_key_file": _path(os.environ.get("RETENTION_SIGNING_KEY_FILE")),
            "link_secret": os.environ.get("RETENTION_LINK_SECRET") or None,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None
