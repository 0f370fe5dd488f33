"""The product's side of an end-to-end stack: the demo application database and the S3 endpoint seeded with
the demo accounts, the ledger on PostgreSQL (every Airflow process writes it), signing keys, a link secret,
a data key per account, and the SendGrid emulator as the ``sendgrid`` Connection. ``env`` is what every
Airflow process gets, as compose gives its services the same variables."""

from __future__ import annotations

import json
import secrets
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pendulum
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from retention import embedded
from retention.backups import LocalKeystore
from retention.certificates import rotate
from retention.ledger import Ledger, migrate
from tests.emulators.sendgrid import KEY, SendGridEmulator
from tests.fixtures.stack import ACCOUNTS, REPO, Stack

TERMINATED = (("acct_4004", "delete"), ("acct_5005", "return"))  # the demo registry's terminated accounts
EPOCH = pendulum.datetime(2000, 1, 1, tz="UTC")
SENDGRID_TENANTS = {"acct_1001": 40, "acct_2002": 60, "acct_3003": 7}  # contacts each


@dataclass
class Product:
    data: Stack  # the application database, S3 endpoint, ledger URL and `now` (rows() and objects() count)
    home: Path
    sendgrid: SendGridEmulator

    @property
    def env(self) -> dict[str, str]:
        return self.data.env

    def reseed(self, per_age: int = 3) -> None:
        """The application database and buckets as new: every account with records of every age."""
        urllib.request.urlopen(urllib.request.Request(f"{self.data.endpoint}/moto-api/reset", method="POST")).close()
        embedded.seed(self.data.app_url, embedded.s3_client(self.data.endpoint), ACCOUNTS, self.data.now,
                      per_age=per_age)

    def ledger(self) -> Ledger:
        return Ledger.open(self.data.ledger_url)

    def sweep_totals(self, airflow_run_id: str) -> tuple[Any, Counter[tuple[str, str]]]:
        """The ledger's run of a retention_sweep DAG run and its records affected per (location, account)."""
        with self.ledger() as ledger:
            run = next(r for r in ledger.runs_since(EPOCH) if r.kind == "sweep" and r.airflow_run_id == airflow_run_id)
            return run, Counter({(t.location, t.account_id): t.affected_count for t in ledger.tasks(run.id)})

    @contextmanager
    def as_process_env(self) -> Iterator[None]:
        """The product's variables in this process too, for code that reads them (Settings.from_env)."""
        with pytest.MonkeyPatch.context() as patch:
            for name, value in self.env.items():
                patch.setenv(name, value)
            yield

    def start_offboardings(self) -> None:
        """The terminated accounts' offboardings planned (awaiting approval): no termination is overdue, so the
        sweep's last task passes; they are the offboardings' to delete, not the sweep's."""
        from tests.dags.test_retention_sweep import start_offboardings

        with self.as_process_env():
            start_offboardings(*TERMINATED)


def database(admin: Engine, server_url: str, prefix: str) -> str:
    """A new database on the session's PostgreSQL: its SQLAlchemy URL (psycopg 3)."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def with_driver(url: str, drivername: str) -> str:
    return make_url(url).set(drivername=drivername).render_as_string(hide_password=False)


@contextmanager
def product(admin: Engine, server_url: str, s3_endpoint: str, home: Path) -> Iterator[Product]:
    """Databases, keys and the emulator for one stack; the databases are dropped and the emulator stopped after."""
    app_url, ledger_url = database(admin, server_url, "e2e_app"), database(admin, server_url, "e2e_ledger")
    migrate(ledger_url)
    keys = home / "keys"
    rotate(keys / "signing.pem", keys / "jwks.json")
    for account in ACCOUNTS:
        LocalKeystore(home / "keystore").data_key(account)
    sendgrid = SendGridEmulator(pending_polls=1)
    sendgrid.start()
    for tenant, contacts in SENDGRID_TENANTS.items():
        sendgrid.add_tenant(tenant, contacts=contacts)
    host, port = sendgrid.url.removeprefix("http://").split(":")
    env = {
        **embedded.airflow_connections(app_url, s3_endpoint),
        "AIRFLOW_CONN_SENDGRID": json.dumps({"conn_type": "http", "host": host, "port": int(port), "schema": "http",
                                             "password": KEY}),
        "RETENTION_RULES_DIR": str(REPO / "retention_rules"),
        "RETENTION_ACCOUNTS_FILE": str(REPO / "demo" / "accounts.yaml"),
        "RETENTION_DATABASE_URL": ledger_url,
        "RETENTION_HOME": str(home),
        "RETENTION_SIGNING_KEY_FILE": str(keys / "signing.pem"),
        "RETENTION_JWKS_FILE": str(keys / "jwks.json"),
        "RETENTION_LINK_SECRET": secrets.token_urlsafe(48),
        "RETENTION_PROCESSOR_NAME": "Demo Processor Inc.",
        "RETENTION_RETURN_POLL_SECONDS": "1",
    }
    made = Product(Stack(app_url, s3_endpoint, ledger_url, pendulum.now("UTC").start_of("second"), env), home,
                   sendgrid)
    made.reseed()
    try:
        yield made
    finally:
        sendgrid.stop()
        for url in (app_url, ledger_url):
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
