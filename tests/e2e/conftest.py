"""One real Airflow stack per test module (its ``EXECUTOR``), over the session's embedded PostgreSQL and S3
endpoint; for the CeleryExecutor, Debian's redis-server as the broker (tests/fixtures/redis.py).

``RETENTION_E2E_SKIP_POOLS_SYNC=1`` starts the stack without ``retention pools sync``: the bug the suite
exists to catch (tasks in a pool nothing created are never scheduled) can then be seen once by hand.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from tests.e2e.airflow_stack import AirflowStack, airflow_stack, base_env
from tests.e2e.product import Product, database, product, with_driver
from tests.e2e.rest import AirflowApi

DAG_IDS = ("retention_sweep", "termination_offboarding", "subprocessor_erasure")


@dataclass
class E2E:
    airflow: AirflowStack
    api: AirflowApi
    product: Product


@pytest.fixture(scope="session")
def _airflow_metadata_template(_postgres_admin: Engine, postgres_server_url: str,
                               tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database Airflow's ``db migrate`` brought to head once; each stack's metadata database is a copy
    (CREATE DATABASE ... TEMPLATE), so the second stack does not migrate from nothing again."""
    url = database(_postgres_admin, postgres_server_url, "e2e_airflow_template")
    home = tmp_path_factory.mktemp("airflow-template")
    env = base_env() | {"AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": with_driver(url, "postgresql+psycopg2")}
    done = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, cwd=home,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return str(make_url(url).database)


def _metadata_database(admin: Engine, server_url: str, template: str, name: str) -> str:
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    return with_driver(make_url(server_url).set(database=name).render_as_string(hide_password=False),
                       "postgresql+psycopg2")


@pytest.fixture(scope="module")
def e2e(request: pytest.FixtureRequest, _postgres_admin: Engine, postgres_server_url: str, s3_endpoint: str,
        _airflow_metadata_template: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2E]:
    """The stack of the module's ``EXECUTOR`` (LocalExecutor or CeleryExecutor), started once for the module."""
    executor: str = request.module.EXECUTOR
    home: Path = tmp_path_factory.mktemp(f"e2e-{executor.lower()}")
    name = f"e2e_airflow_{executor.lower()}_{os.getpid()}"
    metadata_url = _metadata_database(_postgres_admin, postgres_server_url, _airflow_metadata_template, name)
    broker = backend = None
    if executor == "CeleryExecutor":
        broker = f"redis://127.0.0.1:{request.getfixturevalue('redis_server').port}/0"
        backend = "db+" + with_driver(metadata_url, "postgresql")
    try:
        with product(_postgres_admin, postgres_server_url, s3_endpoint, home / "retention") as made, \
                airflow_stack(executor, home / "airflow", metadata_url, made.env, broker_url=broker,
                              result_backend=backend, dag_ids=DAG_IDS,
                              sync_pools=os.environ.get("RETENTION_E2E_SKIP_POOLS_SYNC") != "1") as stack:
            yield E2E(stack, AirflowApi(stack), made)
    finally:
        with _postgres_admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
