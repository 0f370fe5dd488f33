"""10,000 customers read from the application's ``accounts`` table, swept end to end: once by ``retention sweep``
(a whole CLI process) and once by the retention_sweep DAG (dag.test()), on the embedded stack.

The data: every account has, in three tables (page views, meetings, chat conversations with their messages),
records three years old (past every in-service rule's period there) and records ten days old (within every period).
One registry row is bad (an unknown state): it is reported with its account id and reason and none of its records is
touched, while the other 10,000 accounts' due records go. A terminated account is kept for its offboarding, as always.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pendulum
import pytest
import sqlalchemy as sa

from retention import embedded
from retention.ledger import Ledger

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"
ACCOUNTS = 10_000
BAD = "acct_bad_state"  # its row says state 'zombie': refused, and nothing of it is touched
OLD_DAYS, NEW_DAYS = 3 * 365, 10
PER_AGE = 2  # records per account, table and age
TABLES = ("page_views", "meetings", "chat_conversations")
TIME_COLUMN = {"page_views": "viewed_at", "meetings": "created_at", "chat_conversations": "created_at"}


ACCOUNTS_TABLE = """CREATE TABLE IF NOT EXISTS accounts (id text PRIMARY KEY, customer text, state text NOT NULL,
    jurisdiction text NOT NULL, created_at timestamptz NOT NULL, contract_end timestamptz, terminated_at timestamptz,
    election text, elected_at timestamptz, instructions jsonb)"""


@pytest.fixture(scope="module")
def app_url(_postgres_admin, postgres_server_url: str) -> Iterator[str]:
    name = f"scale_{uuid.uuid4().hex}"
    with _postgres_admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield sa.engine.make_url(postgres_server_url).set(database=name).render_as_string(hide_password=False)
    with _postgres_admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def seed(app_url: str, now: pendulum.DateTime) -> None:
    """The demo schema, 10,000 registered accounts plus a bad row, and their records: set-based, in SQL."""
    engine = sa.create_engine(app_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {embedded.VAULT}"))
    embedded.APP.create_all(engine)
    with engine.begin() as conn:  # the application's registry table, as the demo has it
        conn.execute(sa.text(ACCOUNTS_TABLE))
    ids = "'acct_' || lpad(g::text, 5, '0')"
    with engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE accounts"))
        conn.execute(sa.text(
            f"INSERT INTO accounts (id, customer, state, jurisdiction, created_at) "
            f"SELECT {ids}, 'Customer ' || g, 'active', (ARRAY['EEA', 'UK', 'US-CA'])[1 + g % 3], :created "
            f"FROM generate_series(1, :n) g"), {"n": ACCOUNTS, "created": now.subtract(years=5)})
        conn.execute(sa.text("INSERT INTO accounts (id, customer, state, jurisdiction, created_at) "
                             "VALUES (:id, 'Bad Row Ltd', 'zombie', 'EEA', :created)"),
                     {"id": BAD, "created": now.subtract(years=5)})
        for table in TABLES:
            conn.execute(sa.text(f"TRUNCATE {table} CASCADE"))
        accounts = f"(SELECT {ids} AS account_id FROM generate_series(1, :n) g UNION ALL SELECT :bad)"
        for days in (OLD_DAYS, NEW_DAYS):
            at = now.subtract(days=days)
            rows = f"FROM {accounts} a CROSS JOIN generate_series(1, :per) k"
            params = {"n": ACCOUNTS, "bad": BAD, "per": PER_AGE, "at": at}
            conn.execute(sa.text(f"INSERT INTO page_views (account_id, viewed_at, url) "
                                 f"SELECT a.account_id, :at, '/pricing' {rows}"), params)
            conn.execute(sa.text(f"INSERT INTO meetings (account_id, created_at, attendee_email) "
                                 f"SELECT a.account_id, :at, 'someone@example.invalid' {rows}"), params)
            conn.execute(sa.text(
                f"WITH made AS (INSERT INTO chat_conversations (account_id, created_at, last_message_at) "
                f"SELECT a.account_id, :at, :at {rows} RETURNING id) "
                f"INSERT INTO chat_messages (conversation_id, body, created_at) "
                f"SELECT id, '(synthetic)', :at FROM made"),
                params)
        conn.execute(sa.text("ANALYZE"))
    engine.dispose()


def left(app_url: str) -> dict[tuple[str, str], int]:
    """(table, "old"/"new"/"bad") -> rows left, straight from the database."""
    engine = sa.create_engine(app_url)
    counts: dict[tuple[str, str], int] = {}
    with engine.connect() as conn:
        for table in TABLES:
            column = TIME_COLUMN[table]
            query = sa.text(f"SELECT CASE WHEN account_id = :bad THEN 'bad' WHEN {column} < :middle THEN 'old' "
                            f"ELSE 'new' END, count(*) FROM {table} GROUP BY 1")
            middle = pendulum.now("UTC").subtract(days=(OLD_DAYS + NEW_DAYS) // 2)
            for group, n in conn.execute(query, {"bad": BAD, "middle": middle}):
                counts[(table, group)] = n
        counts[("chat_messages", "all")] = conn.execute(sa.text("SELECT count(*) FROM chat_messages")).scalar_one()
    engine.dispose()
    return counts


EXPECTED = {
    **{(table, "new"): ACCOUNTS * PER_AGE for table in TABLES},
    **{(table, "bad"): 2 * PER_AGE for table in TABLES},  # the refused account: old and new records kept
    ("chat_messages", "all"): ACCOUNTS * PER_AGE + 2 * PER_AGE,  # one message per conversation left
}


@pytest.fixture(scope="module")
def scale(app_url: str, s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    urllib.request.urlopen(urllib.request.Request(f"{s3_endpoint}/moto-api/reset", method="POST")).close()
    client = embedded.s3_client(s3_endpoint)
    for bucket in ("chat-attachments", "call-recordings"):
        client.create_bucket(Bucket=bucket)
    client.put_bucket_versioning(Bucket="call-recordings", VersioningConfiguration={"Status": "Enabled"})
    home = tmp_path_factory.mktemp("scale")
    env = {
        **embedded.airflow_connections(app_url, s3_endpoint),
        "RETENTION_RULES_DIR": str(REPO / "retention_rules"),  # its registry.yaml: the accounts table on app_db
        "RETENTION_DATABASE_URL": f"sqlite:///{home / 'ledger.db'}",
    }
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("RETENTION_ACCOUNTS_FILE", raising=False)
        for key, value in env.items():
            patch.setenv(key, value)
        yield env


def last_sweep(ledger_url: str) -> tuple[str, dict, int]:
    """(status, registry snapshot, records deleted) of the ledger's last sweep run; the chain verifies."""
    with Ledger.open(ledger_url) as ledger:
        run_id = ledger.last_run_id("sweep")
        assert run_id is not None and ledger.verify().ok
        run = ledger.get_run(run_id)
        (snapshot,) = ledger.run_events(run_id, "registry.snapshot")
        deleted = sum(t.affected_count for t in ledger.tasks(run_id) if t.action == "delete")
        assert all(t.account_id != BAD for t in ledger.tasks(run_id)), "the refused account was planned"
        return run.status, snapshot.payload, deleted


def check_swept(app_url: str, ledger_url: str) -> None:
    assert left(app_url) == EXPECTED
    status, snapshot, deleted = last_sweep(ledger_url)
    assert status == "succeeded"
    assert snapshot["accounts"] == ACCOUNTS and snapshot["source"].startswith("sql:")
    assert [(r["account_id"], r["reason"]) for r in snapshot["rejected"]] == [(BAD, "unknown_state")]
    # the old page views, meetings and conversations of 10,000 accounts (a conversation's messages go with it,
    # counted as its children, not as records of the location)
    assert deleted == ACCOUNTS * PER_AGE * len(TABLES)


def test_the_cli_sweeps_10000_accounts_from_the_application_database(app_url, scale):
    now = pendulum.now("UTC").start_of("second")
    seed(app_url, now)
    done = subprocess.run([sys.executable, "-m", "retention.cli", "sweep", "--at", now.isoformat()],
                          env={**os.environ, **scale}, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"{BAD}" in done.stdout + done.stderr and "unknown_state" in done.stdout + done.stderr
    check_swept(app_url, scale["RETENTION_DATABASE_URL"])


def test_the_dag_sweeps_10000_accounts_from_the_application_database(app_url, scale, airflow_db, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    # 20,000 records due per table: with one shard per 15,000, each SQL table with work is split in two shards
    # (its pool's two slots), so two workers would share it.
    monkeypatch.setenv("RETENTION_SHARD_RECORDS", "15000")
    dag = DagBag(dag_folder=str(DAGS)).get_dag("retention_sweep")
    dag.deadline = None  # dag.test() cannot run a DAG with a deadline alert (see test_retention_sweep.sweep_dag)
    now = pendulum.now("UTC").start_of("second")
    seed(app_url, now)
    run = dag.test(run_conf={"at": now.isoformat(), "dry_run": False, "acknowledge_mass_deletion": []})
    assert str(run.state) == "success"
    check_swept(app_url, scale["RETENTION_DATABASE_URL"])
    executed = sorted(ti.rendered_map_index for ti in run.get_task_instances() if ti.task_id == "execute_sql")
    assert executed == sorted(f"{location} (shard {n} of 2)" for location in ("chat_conversations", "meetings",
                                                                              "page_views") for n in (1, 2))
