"""The ``Ledger``: opening the database, appending chained events, legal holds and runs.

Every write takes the chain head first (``SELECT ... FOR UPDATE`` on PostgreSQL; on SQLite every
write transaction is ``BEGIN IMMEDIATE``), so appenders in any number of processes serialize and
sequence numbers never collide or skip.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import pendulum
from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from retention.ids import check_account_id
from retention.ledger import chain
from retention.ledger.chain import VerifyResult, check_payload, iso_utc
from retention.ledger.fields import check_staff_id
from retention.ledger.guard import refuse_personal_data
from retention.ledger.models import (
    NAME, TEXT, VERSION_TABLE, ChainHead, ErasableText, Event, LegalHoldRow, PlannedTask, Run, utc,
)
from retention.rules import LegalHold

_log = logging.getLogger(__name__)
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# rejected: an offboarding its approver refused; superseded: a plan made again by a retried plan task
RUN_FINAL_STATUSES = ("succeeded", "failed", "rejected", "superseded")

_KIND = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)*")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_FIELD = re.compile(r"[a-z][a-z0-9_]{0,40}")
ERASED = "(erased)"  # what a legal hold's reference reads once its text was erased
_READ_ONLY = "ledger_read_only"  # execution option: SQLite reads use a deferred BEGIN
# PostgreSQL write transactions wait at most this long for a lock (the chain head, a task row), and no
# statement runs longer: an appender stuck behind a hung transaction backs off and tries again, a bounded
# number of times, instead of holding a worker slot and its own locks for ever.
LOCK_TIMEOUT_MS, STATEMENT_TIMEOUT_MS, LOCK_ATTEMPTS = 5_000, 30_000, 5
_LOCK_NOT_AVAILABLE = "55P03"
CONNECT_TIMEOUT_S = 10
_MIGRATION_LOCK = 0x1ED6E5  # PostgreSQL advisory lock key: one migration at a time


class LedgerSchemaError(RuntimeError):
    """The database schema is not at the revision this code expects."""


class TaskBusy(RuntimeError):
    """Another executor holds the planned task: this one must not run it now (try again later)."""


class LedgerBusy(RuntimeError):
    """A ledger write waited past its lock timeout on every attempt."""


class TextErased(LookupError):
    """The text behind a digest was erased (``Ledger.erase_text``): only its digest remains, in the chain."""


class ClaimLost(RuntimeError):
    """The task was claimed by another executor since this one claimed it: this one stops at once."""


# ---------------------------------------------------------------------------------------------
# Database URL, engine and migrations


def database_url() -> str:
    """``RETENTION_DATABASE_URL``, else a SQLite file ``$RETENTION_HOME/ledger.db`` (default ./var)."""
    url = os.environ.get("RETENTION_DATABASE_URL")
    if url:
        return normalize_url(url)
    home = Path(os.environ.get("RETENTION_HOME", "var")).resolve()
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home / 'ledger.db'}"


def normalize_url(url: str) -> str:
    """Point bare PostgreSQL URLs at psycopg 3, the installed driver."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def create_ledger_engine(url: str) -> Engine:
    url = normalize_url(url)
    if not url.startswith("sqlite"):
        # A server that does not answer ends the call in seconds (the driver's default waits minutes), so a
        # task, a page or a command reports it instead of hanging; PGCONNECT_TIMEOUT still overrides it.
        libpq = url.startswith("postgresql") and not os.environ.get("PGCONNECT_TIMEOUT")
        connect = {"connect_timeout": CONNECT_TIMEOUT_S} if libpq else {}
        return create_engine(url, pool_pre_ping=True, connect_args=connect)
    engine = create_engine(url, connect_args={"timeout": 60})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (SQLAlchemy's pysqlite recipe)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA busy_timeout = 60000")
        cur.execute("PRAGMA journal_mode = WAL")  # readers never block the appender
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # IMMEDIATE takes the write lock up front, so two appenders cannot both read the same head.
        read_only = conn.get_execution_options().get(_READ_ONLY)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


def _alembic_config(connection: Any) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    return cfg


@lru_cache(maxsize=1)
def head_revision() -> str:
    return ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.execution_options(**{_READ_ONLY: True}).connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        return ctx.get_current_revision()


def _upgrade(engine: Engine) -> None:
    # One transaction for the whole upgrade; concurrent migrators wait for it, then find it done.
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        command.upgrade(_alembic_config(conn), "head")


def migrate(url: str | None = None) -> None:
    """Upgrade the ledger database to the newest schema (``alembic upgrade head``)."""
    engine = create_ledger_engine(url or database_url())
    try:
        _upgrade(engine)
    finally:
        engine.dispose()


def _check_schema(engine: Engine) -> None:
    found, expected = current_revision(engine), head_revision()
    if found != expected:
        there = f"revision {found}" if found else "no ledger schema (empty database)"
        raise LedgerSchemaError(f"ledger database {engine.url.render_as_string(hide_password=True)} "
                                f"has {there}, expected revision {expected}: "
                                "run `retention ledger migrate`")


# ---------------------------------------------------------------------------------------------
# Validation


def _now() -> pendulum.DateTime:
    return pendulum.now("UTC")


def db_now(s: Session) -> pendulum.DateTime:
    """The ledger database's clock. Holds are placed by the api-server and checked by workers: one clock
    for both means a hold placed "now" is in force on every machine, whatever their own clocks say."""
    if s.get_bind().dialect.name == "postgresql":
        value = s.execute(text("SELECT clock_timestamp()")).scalar_one()
    else:  # SQLite: UTC text with milliseconds
        value = pendulum.parse(s.execute(text("SELECT strftime('%Y-%m-%dT%H:%M:%fZ', 'now')")).scalar_one())
    return utc(value)


def _text(value: Any, field: str, max_len: int = NAME) -> str:
    """A non-empty string of at most ``max_len`` characters with no personal data in it."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{field} must be a non-empty string")
    if len(value) > max_len:
        raise ValueError(f"{field} is {len(value)} characters long; at most {max_len} are allowed")
    refuse_personal_data(value, field)
    return value


def _staff(value: Any, field: str) -> str:
    """Who acted, as a staff id (``retention.ledger.fields``): it enters the chain, so never a typed name."""
    return check_staff_id(_text(value, field), field)


def _optional_text(value: Any, field: str) -> str | None:
    return None if value is None else _text(value, field)


def _free_text(value: Any, field: str) -> str:
    """A free text bound for ``erasable_texts``: any words (that is why it is kept erasable), but a string,
    not blank, not longer than the column, and storable (PostgreSQL refuses NUL)."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{field} must be a non-empty string")
    if len(value) > TEXT:
        raise ValueError(f"{field} is {len(value)} characters long; at most {TEXT} are allowed")
    if "\x00" in value:
        raise ValueError(f"{field} contains a NUL character")
    return value


def _kind(value: str, field: str = "kind") -> str:
    if not isinstance(value, str) or len(value) > 64 or not _KIND.fullmatch(value):
        raise ValueError(f"{field} {value!r} must be a short dotted lowercase name like 'hold.placed'")
    return value


# ---------------------------------------------------------------------------------------------
# Records handed out to callers


@dataclass(frozen=True)
class HoldRecord:
    id: str
    account_id: str | None
    data_class: str | None
    reason: str
    reference: str
    placed_by: str
    placed_at: pendulum.DateTime
    released_at: pendulum.DateTime | None
    released_by: str | None
    release_reason: str | None

    @classmethod
    def of(cls, row: LegalHoldRow, released: bool) -> HoldRecord:
        """``released``: whether the chain proves the row's release (``_release_proven``); if not, the hold is
        in force and its row's release fields are not shown."""
        if not released:
            return cls(row.id, row.account_id, row.data_class, row.reason, row.reference, row.placed_by,
                       row.placed_at, None, None, None)
        return cls(row.id, row.account_id, row.data_class, row.reason, row.reference, row.placed_by,
                   row.placed_at, row.released_at, row.released_by, row.release_reason)

    def as_dict(self) -> dict:
        """The hold as staff see it; the free-text reason stays in its row."""
        return {"id": self.id, "account_id": self.account_id, "data_class": self.data_class,
                "reference": self.reference, "placed_by": self.placed_by, "placed_at": self.placed_at.isoformat(),
                "released_at": self.released_at.isoformat() if self.released_at else None}

    def to_legal_hold(self) -> LegalHold:
        return LegalHold(id=self.id, account_id=self.account_id, data_class=self.data_class,
                         placed_at=self.placed_at, released_at=self.released_at)


# ---------------------------------------------------------------------------------------------
# The ledger


class Ledger:
    """Append-only, hash-chained ledger. Use ``Ledger.open()``; close it (or use ``with``)."""

    def __init__(self, engine: Engine, *, lock_timeout_ms: int = LOCK_TIMEOUT_MS,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.engine = engine
        self.lock_timeout_ms = lock_timeout_ms
        self._sleep = sleep  # the back-off between attempts (tests pass one that acts instead of waiting)
        self._writer = sessionmaker(engine, expire_on_commit=False)
        self._reader = sessionmaker(engine.execution_options(**{_READ_ONLY: True}),
                                    expire_on_commit=False)

    @classmethod
    def open(cls, url: str | None = None) -> Ledger:
        """Connect. A SQLite ledger is migrated on the spot; any other must already be at head."""
        engine = create_ledger_engine(url or database_url())
        try:
            if engine.dialect.name == "sqlite":
                if current_revision(engine) != head_revision():
                    _upgrade(engine)
            else:
                _check_schema(engine)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A write transaction: pass it as ``session=`` so your writes and the events commit together."""
        with self._writer.begin() as s:
            if self.engine.dialect.name == "postgresql":  # SQLite waits through its busy_timeout instead
                s.execute(text(f"SET LOCAL lock_timeout = {int(self.lock_timeout_ms)}"))
                s.execute(text(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}"))
            yield s

    def _retrying(self, write: Callable[[], Any], what: str) -> Any:
        """Run a write that owns its transaction again after a lock timeout, backing off; ``LedgerBusy`` after
        ``LOCK_ATTEMPTS``. Each wait is logged (the ledger itself is what cannot be written then)."""
        for attempt in range(1, LOCK_ATTEMPTS + 1):
            try:
                return write()
            except DBAPIError as exc:
                if getattr(exc.orig, "sqlstate", None) != _LOCK_NOT_AVAILABLE:
                    raise
                if attempt == LOCK_ATTEMPTS:
                    raise LedgerBusy(f"ledger: {what} waited past its lock timeout ({self.lock_timeout_ms} ms) "
                                     f"{LOCK_ATTEMPTS} times; another transaction holds the lock") from exc
                _log.warning("ledger.lock_timeout what=%s attempt=%d", what, attempt)
                self._sleep(min(5.0, 0.1 * 2 ** attempt))
        raise AssertionError("unreachable")

    @contextmanager
    def _tx(self, session: Session | None) -> Iterator[Session]:
        if session is not None:  # the caller's transaction: the caller commits
            yield session
        else:
            with self.session() as s:
                yield s

    # -- the chain ------------------------------------------------------------------------------

    def append(self, kind: str, payload: dict, *, actor: str, run_id: str | None = None,
               task_id: str | None = None, session: Session | None = None,
               texts: dict[str, str] | None = None) -> Event:
        """Append one event; with ``session``, inside that transaction and without committing.

        ``texts``: free text the event is about (``{"reason": "..."}``). Each is kept in ``erasable_texts``
        in the same transaction, and the event carries only ``<field>_sha256``, never the text.

        Takes the chain-head lock, which is held until the transaction ends: in a shared
        transaction, append after locking your own rows, never before, to keep lock order.
        """
        if not isinstance(payload, dict):
            raise chain.PayloadError(f"payload must be a dict, not {type(payload).__name__}")
        fields = dict(kind=_kind(kind), actor=_staff(actor, "actor"),
                      run_id=_optional_text(run_id, "run_id"),
                      task_id=_optional_text(task_id, "task_id"))
        texts = _event_texts(texts or {}, payload, fields["kind"])
        refuse_personal_data(payload, "payload")
        payload = check_payload(payload)

        def write(s: Session) -> Event:
            digests = {f"{name}_sha256": _keep(s, text, purpose) for name, (text, purpose) in texts.items()}
            return _append(s, payload={**payload, **digests}, **fields)
        if session is not None:  # the caller's transaction: the caller retries it whole if it must
            return write(session)

        def own_transaction() -> Event:
            with self.session() as s:
                return write(s)
        return self._retrying(own_transaction, f"append {kind}")

    # -- free text, kept out of the chain and erasable ------------------------------------------

    def keep_text(self, text: str, purpose: str, *, session: Session | None = None) -> str:
        """Keep ``text`` in ``erasable_texts``; returns the digest an event may carry instead of the text."""
        text, purpose = _free_text(text, "text"), _kind(purpose, "purpose")
        with self._tx(session) as s:
            return _keep(s, text, purpose)

    def text(self, sha256: str) -> str:
        """The text behind a digest; ``TextErased`` once erased, ``LookupError`` for an unknown digest."""
        with self._reader() as s:
            row = s.get(ErasableText, sha256)
        if row is None:
            raise LookupError(f"no kept text with digest {sha256!r}")
        if row.erased_at is not None:
            raise TextErased(f"the text with digest {sha256} was erased at {iso_utc(row.erased_at)}")
        return row.text

    def text_or(self, sha256: str | None, erased: str = "(erased)") -> str | None:
        """The text behind a digest for a document or a page: ``erased`` when it was erased, None for None."""
        if sha256 is None:
            return None
        try:
            return self.text(sha256)
        except TextErased:
            return erased

    def erase_text(self, sha256: str, *, erased_by: str) -> None:
        """Erase a kept text (and its salt): the digest in the chain stays and still verifies, the words are
        gone. A legal hold whose reference it was shows ``(erased)`` from then on. Recorded as
        ``text.erased`` (the digest and the purpose only)."""
        erased_by = _staff(erased_by, "erased_by")

        def write() -> None:
            with self.session() as s:
                row = s.get(ErasableText, sha256, with_for_update=True)
                if row is None:
                    raise LookupError(f"no kept text with digest {sha256!r}")
                if row.erased_at is not None:
                    raise ValueError(f"the text with digest {sha256} was already erased at {iso_utc(row.erased_at)}")
                row.text, row.salt, row.erased_at = None, None, db_now(s)
                s.execute(update(LegalHoldRow).where(LegalHoldRow.reference_sha256 == sha256)
                          .values(reference=ERASED))
                s.flush()
                _append(s, kind="text.erased", actor=erased_by,
                        payload={"text_sha256": sha256, "purpose": row.purpose})
        self._retrying(write, "erase of a kept text")

    def head(self) -> tuple[int, str]:
        with self._reader() as s:
            row = chain.read_head(s)
        return (row.seq, row.hash)

    def events(self, after_seq: int = 0, limit: int | None = None) -> Iterator[Event]:
        """Events with seq > after_seq in order, fetched in batches; no session stays open between."""
        left = limit
        while left is None or left > 0:
            size = 500 if left is None else min(500, left)
            with self._reader() as s:
                batch = s.scalars(select(Event).where(Event.seq > after_seq)
                                  .order_by(Event.seq).limit(size)).all()
            yield from batch
            if len(batch) < size:
                return
            after_seq = batch[-1].seq
            left = None if left is None else left - len(batch)

    def events_of_kind(self, *kinds: str) -> list[Event]:
        """Every event of the given kinds, in order."""
        with self._reader() as s:
            return list(s.scalars(select(Event).where(Event.kind.in_(kinds)).order_by(Event.seq)))

    def run_events(self, run_id: str, *kinds: str) -> list[Event]:
        """One run's events (of the given kinds, if any) in order, through the run_id index."""
        query = select(Event).where(Event.run_id == run_id)
        if kinds:
            query = query.where(Event.kind.in_(kinds))
        with self._reader() as s:
            return list(s.scalars(query.order_by(Event.seq)))

    def verify(self) -> VerifyResult:
        with self._reader() as s:
            return chain.verify(s)

    # -- legal holds ----------------------------------------------------------------------------

    def place_hold(self, *, account_id: str | None, data_class: str | None, reason: str,
                   reference: str, placed_by: str, at: datetime | None = None) -> HoldRecord:
        if account_id is None and data_class is None:
            raise ValueError("a legal hold needs an account_id, a data_class or both: "
                             "a hold on everything is not a hold")
        row = LegalHoldRow(
            id=f"hold-{uuid.uuid4().hex[:12]}",
            account_id=None if account_id is None else check_account_id(account_id),
            data_class=_optional_text(data_class, "data_class"),
            # The reason is free text: it is kept in this row only, never in an event.
            reason=_text(reason, "reason", 500), reference=_text(reference, "reference"),
            placed_by=_staff(placed_by, "placed_by"), placed_at=utc(at) if at else None,
        )
        with self.session() as s:
            row.placed_at = row.placed_at or db_now(s)
            row.reference_sha256 = _keep(s, row.reference, "hold.reference")
            s.add(row)
            s.flush()
            _append(s, kind="hold.placed", actor=row.placed_by, payload=_hold_payload(row))
        return HoldRecord.of(row, released=False)

    def release_hold(self, hold_id: str, *, released_by: str, reason: str,
                     at: datetime | None = None) -> HoldRecord:
        released_by, reason = _staff(released_by, "released_by"), _text(reason, "reason", 500)
        with self.session() as s:
            at = utc(at) if at else db_now(s)
            row = s.scalars(select(LegalHoldRow).where(LegalHoldRow.id == hold_id)
                            .with_for_update()).one_or_none()
            proof = s.get(Event, row.released_seq) if row is not None and row.released_seq is not None else None
            # A release the chain does not prove (a writer set released_at) is no release: this one may end it.
            _check_releasable(row, hold_id, at, released=row is not None and _release_proven(row, proof))
            row.released_at, row.released_by, row.release_reason = at, released_by, reason
            if row.reference_sha256 is None:  # placed before its reference was kept apart (migration 0004)
                row.reference_sha256 = _keep(s, row.reference, "hold.reference")
            s.flush()
            event = _append(s, kind="hold.released", actor=released_by, payload=_hold_payload(row))
            row.released_seq = event.seq  # the proof, committed with the event
        return HoldRecord.of(row, released=True)

    def list_holds(self, include_released: bool = False) -> list[HoldRecord]:
        # In force means not released, as for the deleting paths' guard (holds_in_force): no clock compared.
        with self._reader() as s:
            return [HoldRecord.of(row, released) for row, released in _holds(s)
                    if include_released or not released]

    def holds_in_force(self, account_id: str, data_class: str | None = None) -> list[str]:
        """The guard every deleting path calls right before it acts: ids of the holds not released that
        cover ``data_class`` of the account (with ``None``, any of its data: backups and return packages
        hold every class). "Stop now": a hold is in force from the moment its row exists, whatever its
        ``placed_at`` and whatever this machine's clock says; only a release the chain proves ends it."""
        scope = [(LegalHoldRow.account_id.is_(None)) | (LegalHoldRow.account_id == account_id)]
        # With no data class every hold on the account counts, class-wide ones (no account) included:
        # they cover this account's copy of their class.
        if data_class is not None:
            scope.append((LegalHoldRow.data_class.is_(None)) | (LegalHoldRow.data_class == data_class))
        with self._reader() as s:
            return sorted(row.id for row, released in _holds(s, *scope) if not released)

    def resolver_holds(self) -> list[LegalHold]:
        """Every hold, released ones included: the resolver decides which were in force when."""
        return [r.to_legal_hold() for r in self.list_holds(include_released=True)]

    # -- runs and plans -------------------------------------------------------------------------

    def start_run(self, kind: str, *, dry_run: bool, as_of: datetime, rules_digest: str,
                  dag_id: str | None = None, airflow_run_id: str | None = None,
                  actor: str) -> str:
        if not isinstance(rules_digest, str) or not _SHA256.fullmatch(rules_digest):
            raise ValueError("rules_digest must be a sha256 hex digest (64 lowercase hex characters)")
        run = Run(id=uuid.uuid4().hex, kind=_kind(kind, "run kind"), status="running",
                  dry_run=bool(dry_run), as_of=utc(as_of), rules_digest=rules_digest,
                  dag_id=_optional_text(dag_id, "dag_id"),
                  airflow_run_id=_optional_text(airflow_run_id, "airflow_run_id"),
                  started_at=_now())
        actor = _staff(actor, "actor")
        with self.session() as s:
            s.add(run)
            s.flush()
            _append(s, kind="run.started", actor=actor, run_id=run.id, payload={
                "kind": run.kind, "dry_run": run.dry_run, "as_of": iso_utc(run.as_of),
                "rules_digest": run.rules_digest, "dag_id": run.dag_id,
                "airflow_run_id": run.airflow_run_id,
            })
        return run.id

    def finish_run(self, run_id: str, status: str, *, actor: str) -> None:
        if status not in RUN_FINAL_STATUSES:
            raise ValueError(f"status {status!r} is not one of {', '.join(RUN_FINAL_STATUSES)}")
        actor = _staff(actor, "actor")
        with self.session() as s:
            run = s.scalars(select(Run).where(Run.id == run_id).with_for_update()).one_or_none()
            if run is None:
                raise LookupError(f"no run with id {run_id!r}")
            if run.status != "running":
                raise ValueError(f"run {run_id} already finished with status {run.status!r}")
            run.status, run.finished_at = status, _now()
            s.flush()
            _append(s, kind="run.finished", actor=actor, run_id=run.id,
                    payload={"kind": run.kind, "status": status})

    def last_run_id(self, kind: str) -> str | None:
        with self._reader() as s:
            return s.scalars(select(Run.id).where(Run.kind == kind).order_by(Run.started_at.desc()).limit(1)).first()

    def open_runs(self, kind: str, *, airflow_run_id: str | None = None) -> list[Run]:
        """Runs of ``kind`` not finished yet (of one Airflow run, if given), oldest first."""
        query = select(Run).where(Run.kind == kind, Run.status == "running")
        if airflow_run_id is not None:
            query = query.where(Run.airflow_run_id == airflow_run_id)
        with self._reader() as s:
            return list(s.scalars(query.order_by(Run.started_at)))

    def runs_since(self, since: datetime) -> list[Run]:
        """Runs active at or after ``since`` (started then, still open, or finished then), oldest first."""
        since = utc(since)
        active = (Run.started_at >= since) | Run.finished_at.is_(None) | (Run.finished_at >= since)
        with self._reader() as s:
            return list(s.scalars(select(Run).where(active).order_by(Run.started_at)))

    def get_run(self, run_id: str) -> Run | None:
        with self._reader() as s:
            return s.get(Run, run_id)

    def add_planned_task(self, run_id: str, *, account_id: str, data_class: str, location: str,
                         action: str, rule_id: str, anchor: str | None = None,
                         cutoff: datetime | None = None, total_count: int | None = None,
                         estimated_count: int | None = None, skip_reason: str | None = None,
                         session: Session | None = None) -> str:
        """Record one (account, data class, location) step of a run's plan; returns its id.

        With ``skip_reason`` the step is recorded as skipped: the plan says what is kept and why.
        """
        task = PlannedTask(
            id=uuid.uuid4().hex, run_id=run_id, account_id=check_account_id(account_id),
            data_class=_text(data_class, "data_class"), location=_text(location, "location", 500),
            action=_text(action, "action", 32), rule_id=_text(rule_id, "rule_id"),
            anchor=_optional_text(anchor, "anchor"), cutoff=utc(cutoff) if cutoff else None,
            total_count=total_count, estimated_count=estimated_count,
            status="skipped" if skip_reason else "planned",
            skip_reason=None if skip_reason is None else _text(skip_reason, "skip_reason", 500),
            affected_count=0,
        )
        with self._tx(session) as s:
            s.add(task)
            s.flush()
        return task.id


    def tasks(self, run_id: str, *, location: str | None = None,
              statuses: tuple[str, ...] | None = None) -> list[PlannedTask]:
        """A run's planned tasks (optionally of one location / in some statuses), in a stable order."""
        query = select(PlannedTask).where(PlannedTask.run_id == run_id)
        if location is not None:
            query = query.where(PlannedTask.location == location)
        if statuses is not None:
            query = query.where(PlannedTask.status.in_(statuses))
        with self._reader() as s:
            return list(s.scalars(query.order_by(PlannedTask.location, PlannedTask.account_id)))

    @contextmanager
    def claim(self, task_id: str) -> Iterator[int]:
        """Hold one planned task for this executor for the block; yields its fencing token.

        Two executors of one task (an Airflow retry while ``retention sweep --resume`` runs) must not both
        delete and count. The hold is a lock the database server (PostgreSQL: a session advisory lock) or
        the kernel (SQLite: ``flock`` beside the file) releases by itself when the holder dies, so a killed
        run can be resumed at once. The token is bumped on every claim and checked by every write with
        ``fence=``: a holder that lost its lock without knowing (a paused process whose connection was cut)
        is refused before its next batch. Raises ``TaskBusy`` when another executor holds the task.
        """
        with self._task_lock(task_id):
            with self.session() as s:
                fence = s.execute(update(PlannedTask).where(PlannedTask.id == task_id)
                                  .values(fence=PlannedTask.fence + 1).returning(PlannedTask.fence)).scalar_one_or_none()
            if fence is None:
                raise LookupError(f"no planned task with id {task_id!r}")
            yield fence

    @contextmanager
    def _task_lock(self, task_id: str) -> Iterator[None]:
        if self.engine.dialect.name == "postgresql":
            key = int.from_bytes(hashlib.sha256(task_id.encode()).digest()[:8], "big", signed=True)
            with self.engine.connect() as conn:
                if not conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar_one():
                    raise TaskBusy(f"planned task {task_id} is being executed by another process")
                conn.commit()  # end the autobegun transaction; the session-level lock stays with the connection
                try:
                    yield
                finally:
                    with suppress(DBAPIError):  # a connection already cut took its lock with it
                        conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                        conn.commit()
            return
        database = self.engine.url.database
        if not database or database == ":memory:":  # one process owns an in-memory ledger
            yield
            return
        locks = Path(f"{database}.locks")
        locks.mkdir(exist_ok=True)
        with open(locks / f"{task_id}.lock", "w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise TaskBusy(f"planned task {task_id} is being executed by another process") from None
            yield  # closing the file releases the lock, as does the holder's death

    def task(self, task_id: str) -> PlannedTask:
        with self._reader() as s:
            task = s.get(PlannedTask, task_id)
        if task is None:
            raise LookupError(f"no planned task with id {task_id!r}")
        return task

    def update_task(self, task_id: str, event: tuple[str, dict] | None = None, *, actor: str,
                    fence: int | None = None, add_affected: int = 0, **fields: Any) -> None:
        """Change a task's state and append the event that says so, in one transaction.

        ``fence``: the token of the caller's claim; the write is refused (``ClaimLost``) if the task was
        claimed since. ``add_affected`` is added to the count by the database, never written as a total,
        so no writer can lose another's deletions.
        """
        self._retrying(lambda: self._update_task(task_id, event, actor, fence, add_affected, fields),
                       f"update of task {task_id}")

    def _update_task(self, task_id: str, event: tuple[str, dict] | None, actor: str, fence: int | None,
                     add_affected: int, fields: dict) -> None:
        with self.session() as s:
            task = s.get(PlannedTask, task_id, with_for_update=True)
            if task is None:
                raise LookupError(f"no planned task with id {task_id!r}")
            if fence is not None and task.fence != fence:
                raise ClaimLost(f"planned task {task_id} was claimed by another executor "
                                f"(token {task.fence}, ours {fence}): this one stops")
            for name, value in fields.items():
                setattr(task, name, value)
            s.flush()
            if add_affected:
                s.execute(update(PlannedTask).where(PlannedTask.id == task_id)
                          .values(affected_count=PlannedTask.affected_count + add_affected))
            if event is not None:
                kind, payload = event
                self.append(kind, payload, actor=actor, run_id=task.run_id, task_id=task.id, session=s)


# ---------------------------------------------------------------------------------------------
# Internals shared by the writers (callers validated everything already)


def _append(s: Session, *, kind: str, actor: str, payload: dict, run_id: str | None = None,
            task_id: str | None = None) -> Event:
    head = s.execute(select(ChainHead.seq, ChainHead.hash).where(ChainHead.id == 1)
                     .with_for_update()).one()
    ev = Event(seq=head.seq + 1, event_id=uuid.uuid4().hex, kind=kind, occurred_at=_now(),
               actor=actor, run_id=run_id, task_id=task_id, payload=payload, prev_hash=head.hash)
    ev.hash = chain.event_hash(ev)
    s.add(ev)
    s.flush()
    s.execute(update(ChainHead).where(ChainHead.id == 1).values(seq=ev.seq, hash=ev.hash))
    return ev


def _keep(s: Session, text: str, purpose: str) -> str:
    salt = secrets.token_hex(32)
    digest = hashlib.sha256((salt + text).encode("utf-8")).hexdigest()
    s.add(ErasableText(sha256=digest, salt=salt, text=text, purpose=purpose, created_at=db_now(s)))
    s.flush()
    return digest


def _event_texts(texts: dict, payload: dict, kind: str) -> dict[str, tuple[str, str]]:
    """``{field: (text, purpose)}`` for ``append(texts=...)``: each field a plain name the payload does not
    already use, each text a storable free text; the purpose is ``<event kind>.<field>``."""
    checked = {}
    for name, value in texts.items():
        if not isinstance(name, str) or not _FIELD.fullmatch(name):
            raise ValueError(f"texts: {name!r} is not a field name (lowercase letters, digits, '_')")
        if name in payload or f"{name}_sha256" in payload:
            raise ValueError(f"texts: {name} is also in the payload; a free text goes in texts only")
        checked[name] = (_free_text(value, name), _kind(f"{kind}.{name}", "purpose"))
    return checked


def _hold_payload(row: LegalHoldRow) -> dict:
    payload = {"hold_id": row.id, "account_id": row.account_id, "data_class": row.data_class,
               "reference_sha256": row.reference_sha256, "placed_at": iso_utc(row.placed_at)}
    if row.released_at is not None:
        payload["released_at"] = iso_utc(row.released_at)
    return payload


def _holds(s: Session, *where: Any) -> list[tuple[LegalHoldRow, bool]]:
    """The holds matching ``where``, each with whether its release is proven: the one definition of "released"
    that the guard, the listing and the resolver share. One query: each row joined to the event at its
    ``released_seq``. An unproven release is logged (ids only) so on-call sees the row was written around
    the chain; the hold stays in force."""
    query = (select(LegalHoldRow, Event).outerjoin(Event, Event.seq == LegalHoldRow.released_seq)
             .where(*where).order_by(LegalHoldRow.placed_at, LegalHoldRow.id))
    holds = []
    for row, proof in s.execute(query):
        released = _release_proven(row, proof)
        if row.released_at is not None and not released:
            _log.error("ledger.hold_release_unproven hold_id=%s released_seq=%s: no hold.released event at that "
                       "seq proves the release; the hold stays in force", row.id, row.released_seq)
        holds.append((row, released))
    return holds


def _release_proven(row: LegalHoldRow, proof: Event | None) -> bool:
    """Whether ``proof`` (the event at the row's ``released_seq``) is this hold's release: kind
    ``hold.released``, naming this hold, and agreeing with the row on what the payload records of it."""
    if row.released_at is None or proof is None or proof.kind != "hold.released":
        return False
    recorded = {"hold_id": row.id, "account_id": row.account_id, "data_class": row.data_class,
                "released_at": iso_utc(row.released_at)}
    payload = proof.payload if isinstance(proof.payload, dict) else {}
    return payload.get("hold_id") == row.id and all(
        payload[field] == value for field, value in recorded.items() if field in payload)


def _check_releasable(row: LegalHoldRow | None, hold_id: str, at: pendulum.DateTime, *, released: bool) -> None:
    if row is None:
        raise LookupError(f"no legal hold with id {hold_id!r}")
    if released:
        raise ValueError(f"legal hold {hold_id} was already released at {iso_utc(row.released_at)} "
                         f"by {row.released_by}")
    if at < row.placed_at:
        raise ValueError(f"legal hold {hold_id} cannot be released at {iso_utc(at)}, "
                         f"before it was placed at {iso_utc(row.placed_at)}")


__all__ = [
    "ClaimLost", "HoldRecord", "Ledger", "LedgerBusy", "LedgerSchemaError", "TaskBusy", "TextErased", "MIGRATIONS_DIR", "create_ledger_engine",
    "current_revision", "database_url", "head_revision", "migrate", "normalize_url",
]
