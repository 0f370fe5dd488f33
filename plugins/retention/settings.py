"""Where the product finds its inputs. One place, read from the environment, used by DAGs and CLI alike."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from retention.links import SECRET_RULE, secret_problem
from retention.masking import MASK, mask_text, mask_url, masked_connection  # noqa: F401 (used by cli)


@dataclass(frozen=True)
class Settings:
    rules_dir: Path
    accounts_file: Path | None  # the account registry (a file in the embedded stack)
    database_url: str | None  # the ledger; None: SQLite under $RETENTION_HOME
    home: Path = Path("var")  # what the product writes: the default ledger, issued certificates
    jwks_file: Path | None = None  # the published public keys, current and retired
    signing_key_file: Path | None = None  # None: the Airflow Connection retention_signing_key
    link_secret: str | None = field(default=None, repr=False)  # signs the customers' download links
    # Earlier link secrets whose links still open (a rotation's window): remove one to end its links.
    link_secrets_previous: tuple[str, ...] = field(default=(), repr=False)
    processor_name: str = "the data importer (set RETENTION_PROCESSOR_NAME)"  # who certifies
    returns_conn_id: str = "object_store"  # Airflow Connection of the bucket return packages go to
    returns_bucket: str = "retention-returns"
    backups_conn_id: str = "object_store"  # where database snapshots are kept (they expire, never edited)
    backups_bucket: str = "backups"
    backups_prefix: str = "app_db/"
    backups_source: str = "app_db"  # the Connection whose database the snapshots copy
    # An Airflow `aws` Connection: per-account keys are AWS KMS keys; None: the local keystore under home.
    backups_kms_conn_id: str | None = None
    key_deletion_window_days: int = 7  # per-account data keys: like AWS KMS, 7 to 30 days
    # A sweep that would make more than this share of a location's records due in one run is refused there
    # unless the run acknowledges that location: a typo in a period must not become a mass deletion.
    mass_deletion_share: float = 0.5
    # Locations holding fewer records than this (of registered accounts) are not checked: on a tiny table
    # a few records are a large share without being a mass deletion.
    mass_deletion_min_records: int = 1000
    # Signed checkpoints of the ledger chain, kept outside the ledger database (retention.ledger.checkpoints).
    checkpoint_key_file: Path | None = None  # Ed25519 PEM, mode 0600; None: $RETENTION_HOME/checkpoint-key.pem
    checkpoint_jwks_file: Path | None = None  # the public halves verify trusts; None: beside the key file
    checkpoint_dir: Path | None = None  # embedded stack; None: $RETENTION_HOME/checkpoints
    checkpoint_conn_id: str | None = None  # an Airflow `aws` Connection: publish to S3 instead of the directory
    checkpoint_bucket: str = "retention-checkpoints"  # must have Object Lock enabled
    checkpoint_retention_days: int = 3650  # COMPLIANCE retention of every checkpoint object

    @property
    def keystore_dir(self) -> Path:
        """The embedded stack's local keystore of per-account data keys (AWS KMS in production)."""
        return self.home / "keystore"

    @property
    def certificates_dir(self) -> Path:
        return self.home / "certificates"

    @property
    def systems_file(self) -> Path:
        return self.rules_dir / "systems.yaml"

    def masked(self) -> dict:
        """The effective settings as ``retention config show`` prints them: no secret, only whether it is set;
        any URL with its password and secret query parameters masked."""
        shown = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}
        shown["link_secret"] = MASK if self.link_secret else None
        shown["link_secrets_previous"] = [MASK for _ in self.link_secrets_previous]
        return {k: mask_text(v) if isinstance(v, str) else v for k, v in shown.items()}

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
            **_link_secrets(),
            **{name: os.environ[f"RETENTION_{name.upper()}"] for name in _TEXT if os.environ.get(f"RETENTION_{name.upper()}")},
        }
        if os.environ.get("RETENTION_KEY_DELETION_WINDOW_DAYS"):
            values["key_deletion_window_days"] = int(os.environ["RETENTION_KEY_DELETION_WINDOW_DAYS"])
        if os.environ.get("RETENTION_MASS_DELETION_SHARE"):
            values["mass_deletion_share"] = _share("RETENTION_MASS_DELETION_SHARE")
        if os.environ.get("RETENTION_MASS_DELETION_MIN_RECORDS"):
            values["mass_deletion_min_records"] = _count("RETENTION_MASS_DELETION_MIN_RECORDS")
        values.update(_checkpoint_values())
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


_TEXT = ("processor_name", "returns_conn_id", "returns_bucket", "backups_conn_id", "backups_bucket", "backups_prefix",
         "backups_source", "backups_kms_conn_id")


def _share(name: str) -> float:
    """A fraction above 0 and at most 1 (1 turns the check off: no plan makes more than all of a location due)."""
    text = os.environ[name]
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 1:
        raise ValueError(f"{name}={text!r}: expected a fraction above 0 and at most 1, e.g. 0.5")
    return value


def _count(name: str) -> int:
    text = os.environ[name]
    if not text.strip().isdigit():
        raise ValueError(f"{name}={text!r}: expected a whole number of records, 0 or more")
    return int(text)


def _checkpoint_values() -> dict:
    """The RETENTION_CHECKPOINT_* settings that are set."""
    values = {name: _path(os.environ.get(f"RETENTION_{name.upper()}"))
              for name in ("checkpoint_key_file", "checkpoint_jwks_file", "checkpoint_dir")}
    values.update({name: os.environ.get(f"RETENTION_{name.upper()}") or None
                   for name in ("checkpoint_conn_id", "checkpoint_bucket")})
    if os.environ.get("RETENTION_CHECKPOINT_RETENTION_DAYS"):
        values["checkpoint_retention_days"] = _count("RETENTION_CHECKPOINT_RETENTION_DAYS")
        if values["checkpoint_retention_days"] < 1:
            raise ValueError("RETENTION_CHECKPOINT_RETENTION_DAYS: expected at least 1 day")
    return {k: v for k, v in values.items() if v is not None}


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


def _link_secrets() -> dict:
    """RETENTION_LINK_SECRET and RETENTION_LINK_SECRET_PREVIOUS (comma-separated), each checked against
    ``links.SECRET_RULE`` here, so a weak secret stops the process at start rather than at the first link."""
    current = os.environ.get("RETENTION_LINK_SECRET") or None
    previous = tuple(s.strip() for s in os.environ.get("RETENTION_LINK_SECRET_PREVIOUS", "").split(",") if s.strip())
    if previous and not current:
        raise ValueError("RETENTION_LINK_SECRET_PREVIOUS is set without RETENTION_LINK_SECRET: "
                         "previous secrets only verify links during a rotation to a current one")
    named = ([("RETENTION_LINK_SECRET", current)] if current else []) + [
        (f"RETENTION_LINK_SECRET_PREVIOUS (secret {i})", s) for i, s in enumerate(previous, 1)]
    for name, secret in named:
        if problem := secret_problem(secret):
            raise ValueError(f"{name} {problem}; expected {SECRET_RULE}")
    return {"link_secret": current, "link_secrets_previous": previous}
