"""The ledger database: its URL, the engine (SQLite pragmas and transaction mode), and the Alembic schema.

A SQLite ledger (the embedded default) is migrated when it is opened; any other must already be at the
head revision (``retention ledger migrate``), so a worker never changes a shared production schema.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, text

from retention.ledger.models import VERSION_TABLE
from retention.settings import Settings

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
READ_ONLY = "ledger_read_only"  # execution option: SQLite reads use a deferred BEGIN
CONNECT_TIMEOUT_S = 10
_MIGRATION_LOCK = 0x1ED6E5  # PostgreSQL advisory lock key: one migration at a time


class LedgerSchemaError(RuntimeError):
    """The database schema is not at the revision this code expects."""


def database_url(settings: Settings | None = None) -> str:
    """The setting ``database_url`` (``RETENTION_DATABASE_URL``), else a SQLite file ``<home>/ledger.db``
    (``RETENTION_HOME``, default ./var)."""
    settings = settings or Settings.from_env()
    if settings.database_url:
        return normalize_url(settings.database_url)
    home = Path(settings.home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home / 'ledger.db'}"


def normalize_url(url: str) -> str:
    """Point bare PostgreSQL URLs at psycopg 3, the installed driver."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def create_ledger_engine(url: str, settings: Settings | None = None) -> Engine:
    """An engine on the ledger at ``url``; ``settings`` (read from the environment if not given, and only for
    PostgreSQL) says whether libpq's own ``PGCONNECT_TIMEOUT`` is set."""
    url = normalize_url(url)
    if not url.startswith("sqlite"):
        # A server that does not answer ends the call in seconds (the driver's default waits minutes), so a
        # task, a page or a command reports it instead of hanging. When PGCONNECT_TIMEOUT is set, libpq reads
        # it itself and no timeout is passed that would override it.
        libpq = url.startswith("postgresql") and (settings or Settings.from_env()).pgconnect_timeout is None
        connect = {"connect_timeout": CONNECT_TIMEOUT_S} if libpq else {}
        return create_engine(url, pool_pre_ping=True, connect_args=connect)
    engine = create_engine(url, connect_args={"timeout": 60})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: object) -> None:  # a sqlite3.Connection (DB-API: untyped here)
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (SQLAlchemy's pysqlite recipe)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA busy_timeout = 60000")
        cur.execute("PRAGMA journal_mode = WAL")  # readers never block the appender
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # IMMEDIATE takes the write lock up front, so two appenders cannot both read the same head.
        read_only = conn.get_execution_options().get(READ_ONLY)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


def open_engine(url: str | None = None) -> Engine:
    """An engine on a ledger at the head revision: a SQLite ledger is migrated on the spot, any other is
    checked (``LedgerSchemaError``). The engine is disposed of if either fails."""
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
    return engine


def _alembic_config(connection: Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    return cfg


@lru_cache(maxsize=1)
def head_revision() -> str:
    head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    if head is None:  # the migrations directory ships with the package: it always has a head
        raise LedgerSchemaError(f"{MIGRATIONS_DIR} holds no migration")
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.execution_options(**{READ_ONLY: True}).connect() as conn:
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
