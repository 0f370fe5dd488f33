"""Where the product finds its inputs: every environment variable it reads, in one place, for DAGs, API and CLI.

Each field is read from ``RETENTION_<FIELD NAME>`` (an empty value counts as unset), except the few that belong to
another program and keep its name (``AIRFLOW_API_TOKEN``, libpq's ``PGCONNECT_TIMEOUT``). A setting that cannot be
used stops the process at start with a ``ValueError`` naming the variable, never at the first use.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from retention.links import SECRET_RULE, secret_problem
from retention.masking import MASK, mask_text

PREFIX = "RETENTION_"
PROCESSOR_NAME_UNSET = "the data importer (set RETENTION_PROCESSOR_NAME)"  # no certificate is signed under it


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=PREFIX, env_ignore_empty=True, frozen=True, validate_by_name=True)

    rules_dir: Path = Path("retention_rules")
    # An accounts.yaml to read the account registry from, in place of registry.yaml's source (tests, demo tools).
    accounts_file: Path | None = None
    registry_file: Path | None = None  # where the registry is read from; None: <rules_dir>/registry.yaml
    database_url: str | None = None  # the ledger; None: SQLite under $RETENTION_HOME
    home: Path = Path("var")  # what the product writes: the default ledger, issued certificates
    jwks_file: Path | None = None  # the published public keys, current and retired
    signing_key_file: Path | None = None  # None: the Airflow Connection retention_signing_key
    link_secret: str | None = Field(default=None, repr=False)  # signs the customers' download links
    # Earlier link secrets whose links still open (a rotation's window), comma-separated: remove one to end its links.
    link_secrets_previous: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), repr=False, validation_alias="RETENTION_LINK_SECRET_PREVIOUS")
    processor_name: str = PROCESSOR_NAME_UNSET  # who certifies
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
    # How often termination_offboarding asks whether the customer confirmed a return package (read when the
    # DAG file is parsed).
    return_poll_seconds: int = 900
    # Airflow's api-server, which `retention offboard` triggers through, and the caller's access token there.
    airflow_api_url: str = "http://localhost:8080"
    airflow_api_token: str | None = Field(default=None, repr=False, validation_alias="AIRFLOW_API_TOKEN")
    # libpq's own connect timeout in seconds, as libpq reads it (None: unset; the ledger then waits 10 s).
    pgconnect_timeout: str | None = Field(default=None, validation_alias="PGCONNECT_TIMEOUT")
    # Who is mailed when a task or a DAG run fails, a manual attestation's form opens or nears its deadline, or the
    # sweep misses its window (retention.dagkit.notify), comma-separated; none: each such event logs one warning.
    alert_recipients: Annotated[tuple[str, ...], NoDecode] = ()
    alert_from: str | None = None  # the sender; None: the SMTP Connection's from_email extra
    smtp_conn_id: str = "smtp_default"  # the Airflow SMTP Connection the mails go through
    # A manual attestation still unanswered this many hours before its deadline gets one reminder mail.
    attestation_reminder_hours: float = 48.0
    # retention_sweep must finish within this many hours of being queued (read when the DAG file is parsed).
    sweep_deadline_hours: float = 6.0
    # The first retry's delay of a DAG task that failed on a passing fault, doubled per try up to 30 minutes
    # (retention.dagkit.defaults; read when the DAG files are parsed).
    retry_delay_seconds: float = 120.0
    # A location gets one execute shard per this many records planned due there, up to its kind's pool slots.
    shard_records: int = Field(default=1_000_000, ge=1)
    # Data subject requests (retention.requests). An erasure finding more records than this waits for a second
    # person's approval in Required Actions (four eyes); at or below it, it proceeds once previewed.
    subject_approval_records: int = Field(default=1_000, ge=0)
    # A request's identifiers are erased this many days after it closed (the data subject's window to complain
    # or appeal; the keyed hashes stay in the ledger).
    subject_appeal_days: int = Field(default=90, ge=0)
    # An open request this many days before its legal deadline is alerted (retention.dagkit.notify).
    subject_deadline_warning_days: int = Field(default=7, ge=0)
    # The HMAC key the ledger's identifier hashes are keyed with (0600); None: $RETENTION_HOME/keys/subject-hmac.key
    subject_key_file: Path | None = None

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

    @property
    def registry_path(self) -> Path:
        """``registry.yaml``: which source the account registry is read from (the application's database)."""
        return self.registry_file or self.rules_dir / "registry.yaml"

    def masked(self) -> dict[str, Any]:
        """The effective settings as ``retention config show`` prints them: no secret, only whether it is set;
        any URL with its password and secret query parameters masked."""
        shown = {k: str(v) if isinstance(v, Path) else v for k, v in self.model_dump().items()}
        shown["link_secret"] = MASK if self.link_secret else None
        shown["link_secrets_previous"] = [MASK for _ in self.link_secrets_previous]
        shown["airflow_api_token"] = MASK if self.airflow_api_token else None
        return {k: mask_text(v) if isinstance(v, str) else v for k, v in shown.items()}

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        """The environment's settings, with ``overrides`` (those not None) in place of what it says. Raises a
        ValueError naming each variable that cannot be used (never its value: it may be a secret)."""
        try:
            return cls(**{k: v for k, v in overrides.items() if v is not None})
        except ValidationError as exc:
            raise ValueError("; ".join(_problem(error) for error in exc.errors())) from None

    # --- checks whose messages name the variable and say what is expected --------------------------------------

    @field_validator("mass_deletion_share", mode="before")
    @classmethod
    def _share(cls, value: object) -> object:
        """A fraction above 0 and at most 1 (1 turns the check off: no plan makes more than all of a location due)."""
        if not isinstance(value, str):
            return value
        try:
            share = float(value)
        except ValueError:
            share = -1.0
        if not 0 < share <= 1:
            raise ValueError(f"RETENTION_MASS_DELETION_SHARE={value!r}: expected a fraction above 0 and at most 1, "
                             "e.g. 0.5")
        return share

    @field_validator("mass_deletion_min_records", "checkpoint_retention_days", mode="before")
    @classmethod
    def _count(cls, value: object, info: ValidationInfo) -> object:
        if isinstance(value, str) and not value.strip().isdigit():
            unit = "days" if info.field_name == "checkpoint_retention_days" else "records"
            raise ValueError(f"{_variable(info.field_name)}={value!r}: expected a whole number of {unit}, 0 or more")
        return value

    @field_validator("checkpoint_retention_days")
    @classmethod
    def _at_least_a_day(cls, days: int) -> int:
        if days < 1:
            raise ValueError("RETENTION_CHECKPOINT_RETENTION_DAYS: expected at least 1 day")
        return days

    @field_validator("link_secrets_previous", "alert_recipients", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        return tuple(s.strip() for s in value.split(",") if s.strip()) if isinstance(value, str) else value

    @field_validator("alert_recipients")
    @classmethod
    def _addresses(cls, recipients: tuple[str, ...]) -> tuple[str, ...]:
        for i, address in enumerate(recipients, 1):
            local, at, domain = address.rpartition("@")
            if not (at and local and "." in domain) or any(c.isspace() for c in address):
                raise ValueError(f"RETENTION_ALERT_RECIPIENTS (address {i}): expected an email address such as "
                                 "oncall@example.com, the addresses separated by commas")
        return recipients

    @field_validator("retry_delay_seconds")
    @classmethod
    def _positive_seconds(cls, seconds: float, info: ValidationInfo) -> float:
        if not (seconds > 0 and math.isfinite(seconds)):
            raise ValueError(f"{_variable(info.field_name)}: expected a number of seconds above 0, e.g. 120")
        return seconds

    @field_validator("attestation_reminder_hours", "sweep_deadline_hours")
    @classmethod
    def _positive_hours(cls, hours: float, info: ValidationInfo) -> float:
        if not (hours > 0 and math.isfinite(hours)):
            raise ValueError(f"{_variable(info.field_name)}: expected a number of hours above 0, e.g. 6 or 0.5")
        return hours

    @model_validator(mode="after")
    def _link_secrets_are_strong(self) -> Settings:
        """Each link secret is checked against ``links.SECRET_RULE`` here, so a weak secret stops the process at
        start rather than at the first link."""
        if self.link_secrets_previous and not self.link_secret:
            raise ValueError("RETENTION_LINK_SECRET_PREVIOUS is set without RETENTION_LINK_SECRET: "
                             "previous secrets only verify links during a rotation to a current one")
        named = ([("RETENTION_LINK_SECRET", self.link_secret)] if self.link_secret else []) + [
            (f"RETENTION_LINK_SECRET_PREVIOUS (secret {i})", s) for i, s in enumerate(self.link_secrets_previous, 1)]
        for name, secret in named:
            if problem := secret_problem(secret):
                raise ValueError(f"{name} {problem}; expected {SECRET_RULE}")
        return self


def connection_from_env(conn_id: str) -> str | None:
    """An Airflow Connection given in the environment as Airflow reads it (``AIRFLOW_CONN_<CONN_ID>``, a URI or
    JSON), or None when it is not: Airflow then finds it in its metadata database or secrets backend."""
    return os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}") or None


def _variable(field_name: str | None) -> str:
    """The environment variable a field is read from."""
    field = Settings.model_fields.get(field_name or "")
    alias = field.validation_alias if field is not None else None
    return alias if isinstance(alias, str) else f"{PREFIX}{(field_name or '').upper()}"


def _problem(error: ErrorDetails) -> str:
    """One validation error as a line naming the variable: our own checks' messages as they are, pydantic's own
    with the variable in front (never the value)."""
    if error["type"] == "value_error":
        return str(error["ctx"]["error"])
    name = str(error["loc"][0]) if error["loc"] else ""
    variable = name if name.isupper() else _variable(name)
    return f"{variable}: {error['msg']}"
