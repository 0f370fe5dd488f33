"""SQLAlchemy 2 models of the ledger database. No column may hold personal data.

Every timestamp goes through ``UTCDateTime``: it refuses naive datetimes on the way in and returns
UTC-aware pendulum datetimes on the way out (SQLite hands back naive ones, PostgreSQL aware ones in
the session's time zone), so hashes and comparisons never depend on the backend.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pendulum
from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# Named constraints: Alembic batch mode on SQLite and autogenerate comparisons need stable names.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

GENESIS_HASH = "0" * 64

# Not "alembic_version": the ledger may share a PostgreSQL database with Airflow's metadata.
VERSION_TABLE = "ledger_alembic_version"

# Lengths shared with the migration (which must not import this module, so it repeats them).
ID = 32          # uuid4 hex
NAME = 200       # account ids, data class names, staff ids, rule ids
HASH = 64        # sha256 hex
TEXT = 2000      # a free text kept erasable (a reason, a reference)


def utc(value: datetime) -> pendulum.DateTime:
    """A timezone-aware datetime as a UTC pendulum datetime; naive input is refused."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value.isoformat()} refused: pass a timezone-aware datetime")
    return pendulum.instance(value).in_timezone("UTC")


class UTCDateTime(TypeDecorator[datetime]):
    """``DateTime(timezone=True)`` that always stores and returns UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        v = utc(value)
        # Plain stdlib datetime for the drivers; SQLite has no time zones, so store naive UTC there.
        tz = None if dialect.name == "sqlite" else UTC
        return datetime(v.year, v.month, v.day, v.hour, v.minute, v.second, v.microsecond, tzinfo=tz)

    def process_result_value(self, value: datetime | None, dialect: Any) -> pendulum.DateTime | None:
        if value is None:
            return None
        if value.tzinfo is None:  # SQLite: stored as naive UTC
            value = value.replace(tzinfo=UTC)
        return pendulum.instance(value).in_timezone("UTC")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Run(Base):
    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    dry_run: Mapped[bool]
    as_of: Mapped[datetime] = mapped_column(UTCDateTime)
    rules_digest: Mapped[str] = mapped_column(String(HASH))
    dag_id: Mapped[str | None] = mapped_column(String(250))
    airflow_run_id: Mapped[str | None] = mapped_column(String(250))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class PlannedTask(Base):
    """One step of a run's plan: an account's data of one class in one location, and what became of it.

    ``anchor``/``cutoff`` are the store selector (both None: all of the account's data there).
    Status: planned -> running -> done -> verified | residue; or skipped (``skip_reason``) or held.
    """

    __tablename__ = "planned_tasks"
    __table_args__ = (UniqueConstraint("run_id", "account_id", "data_class", "location"),)

    id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    account_id: Mapped[str] = mapped_column(String(NAME))
    data_class: Mapped[str] = mapped_column(String(NAME))
    location: Mapped[str] = mapped_column(String(500))
    action: Mapped[str] = mapped_column(String(32))
    rule_id: Mapped[str] = mapped_column(String(NAME))
    anchor: Mapped[str | None] = mapped_column(String(32))
    cutoff: Mapped[datetime | None] = mapped_column(UTCDateTime)
    total_count: Mapped[int | None] = mapped_column(BigInteger)  # the account's records there at plan time
    estimated_count: Mapped[int | None] = mapped_column(BigInteger)  # of those, due at plan time
    status: Mapped[str] = mapped_column(String(16), default="planned", server_default="planned")
    skip_reason: Mapped[str | None] = mapped_column(String(500))
    checkpoint: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # JSON: a store's own resume state
    affected_count: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    residue: Mapped[int | None] = mapped_column(BigInteger)
    retained: Mapped[list[Any] | None] = mapped_column(JSON)  # JSON, as the executor wrote it
    # Bumped by every claim (``Ledger.claim``); a write carrying an older value is refused, so an executor
    # that lost its claim (paused, partitioned) cannot overwrite the one that took the task over.
    fence: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # A data subject request's task: the store selects only the person's records (``subject_requests.id``);
    # None for an account-wide task.
    subject_request_id: Mapped[str | None] = mapped_column(String(ID), index=True)


class Event(Base):
    """One link of the hash chain. ``seq`` is assigned by ``Ledger.append``, never by the database."""

    __tablename__ = "events"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    event_id: Mapped[str] = mapped_column(String(ID), unique=True)
    kind: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(NAME))
    run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id"), index=True)
    # Usually a planned_tasks id; no FK, so the chain depends on no other table's rows.
    task_id: Mapped[str | None] = mapped_column(String(NAME))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)  # JSON: each event kind has its own members
    prev_hash: Mapped[str] = mapped_column(String(HASH))
    hash: Mapped[str] = mapped_column(String(HASH), unique=True)

    def __repr__(self) -> str:
        return f"Event(seq={self.seq}, kind={self.kind!r}, hash={self.hash[:12]}…)"


class ChainHead(Base):
    """The single row (id=1) naming the last event; seeded by the migration with seq 0."""

    __tablename__ = "chain_head"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(HASH))


class LegalHoldRow(Base):
    __tablename__ = "legal_holds"
    __table_args__ = (
        CheckConstraint("account_id IS NOT NULL OR data_class IS NOT NULL", name="scoped"),
    )

    id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    account_id: Mapped[str | None] = mapped_column(String(NAME))
    data_class: Mapped[str | None] = mapped_column(String(NAME))
    reason: Mapped[str] = mapped_column(String(500))
    reference: Mapped[str] = mapped_column(String(NAME))
    placed_by: Mapped[str] = mapped_column(String(NAME))
    placed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    released_by: Mapped[str | None] = mapped_column(String(NAME))
    release_reason: Mapped[str | None] = mapped_column(String(500))
    # The reference's digest in ``erasable_texts``: what the hold's events carry instead of the reference.
    reference_sha256: Mapped[str | None] = mapped_column(String(HASH))
    # The seq of the ``hold.released`` event that proves the release. A database writer can set released_at
    # without appending that event; a release the event at this seq does not prove is not a release.
    released_seq: Mapped[int | None] = mapped_column(BigInteger)


class ErasableText(Base):
    """Free text an event refers to by digest (a reason, a reference, a ticket): kept here, not in the chain,
    so it can be erased while the chain still verifies.

    ``sha256`` is the sha256 of ``salt`` followed by the text. The salt is random per row, so once the text
    and its salt are erased the digest left in the chain cannot be linked back to the text by guessing
    candidates (a ticket number or a short name is easily guessed). An erased row stays, with
    ``erased_at``: the chain's digest still resolves to "erased", not to "unknown".
    """

    __tablename__ = "erasable_texts"

    sha256: Mapped[str] = mapped_column(String(HASH), primary_key=True)
    salt: Mapped[str | None] = mapped_column(String(HASH))
    text: Mapped[str | None] = mapped_column(String(TEXT))
    purpose: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Certificate(Base):
    __tablename__ = "certificates"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(NAME), index=True)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(32))
    chain_head_hash: Mapped[str] = mapped_column(String(HASH))
    key_id: Mapped[str | None] = mapped_column(String(NAME))
    document: Mapped[dict[str, Any]] = mapped_column(JSON)  # the signed certificate, as JSON


class CohortCheckpoint(Base):
    """Where a cohort of one location stands: the tasks with the same action and anchor, deleted together in
    key ranges (``engine.executor``). ``after``: the cursor every range up to which is done for all of them;
    ``pending``: the range in flight (``after``, ``upper``, ``counts`` per task id) between its intent and its
    outcome. The per-task counts live here, not in the hash chain: the chain's ``batch.intent`` carries the
    location, the counts' sum and the cursors' digests only."""

    __tablename__ = "cohort_checkpoints"

    id: Mapped[str] = mapped_column(String(HASH), primary_key=True)  # sha256 of run, location, shard, cohort
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    location: Mapped[str] = mapped_column(String(500))
    after: Mapped[str | None] = mapped_column(String(TEXT))
    pending: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    fence: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")  # the claim's token


class SubjectRequestRow(Base):
    """A data subject request (``retention.requests``). The identifiers are personal data: they are kept here,
    outside the chain, while the request is open, and erased (``identifiers`` set to NULL) once it closed and
    its appeal window passed. The chain carries their keyed hashes only (``identifier_hashes``)."""

    __tablename__ = "subject_requests"

    id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(NAME), index=True)
    request_type: Mapped[str] = mapped_column(String(16))  # access | erasure
    regime: Mapped[str] = mapped_column(String(8))  # gdpr | ccpa
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)  # the day the customer received it, 00:00 UTC
    deadline_at: Mapped[datetime] = mapped_column(UTCDateTime)  # the end of its legal deadline's last day
    reference_sha256: Mapped[str] = mapped_column(String(HASH))  # the customer's reference, in erasable_texts
    identifiers: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # {"given": {...}, "expanded": {...}}
    identifier_hashes: Mapped[list[Any]] = mapped_column(JSON)  # keyed hashes of the given identifiers
    filed_by: Mapped[str] = mapped_column(String(NAME))  # a staff id, or customer:<credential id>
    filed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # An access request's package is encrypted to this age public key of the customer (not personal data).
    recipient: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(24))
    run_id: Mapped[str | None] = mapped_column(String(ID), index=True)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    identifiers_erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class CustomerCredential(Base):
    """An API credential a customer's systems use for the customer routes (``retention.api.customers``): issued
    and revoked by staff, bound to one account. Only the secret's sha256 is kept."""

    __tablename__ = "customer_credentials"

    id: Mapped[str] = mapped_column(String(ID), primary_key=True)  # public: the token's first part
    account_id: Mapped[str] = mapped_column(String(NAME), index=True)
    secret_sha256: Mapped[str] = mapped_column(String(HASH))
    issued_by: Mapped[str] = mapped_column(String(NAME))
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_by: Mapped[str | None] = mapped_column(String(NAME))
