"""The SaaS bench's data: the demo application database at scale, the rules' cutoffs, and what must be left.

The application database is the demo schema (``retention.embedded.APP``, its ``accounts`` table included).
Accounts are spread over three jurisdictions of the shipped rules (EEA, UK, US-CA), in the states active,
trial and suspended, and every fifth one carries its own instructions within the rules' bounds, so cutoffs
differ per account and per table. Every table gets the same number of rows per account (chat messages two per
conversation), row ``g`` belongs to account ``g mod n`` (interleaved, as a shared database holds them), ids grow
with time, and every timestamp column of a row holds the same time; ages are spread so that about 60 % of the
rows are past the shipped default periods. Seeding is ``INSERT ... SELECT generate_series``, no row in Python.

The cutoffs are the rules' (``resolve`` and the sweep's step for each account and location, at one instant),
written to ``bench.cutoffs``; ``census`` counts, per table, the rows and the rows still past their cutoff
(``app_users``: past it and still identifiable), which is how every contender is verified.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

from common import REPO, log

JURISDICTIONS = ("EEA", "EEA", "EEA", "EEA", "EEA", "UK", "UK", "US-CA", "US-CA", "US-CA")  # by i mod 10
STATES = ("active",) * 18 + ("trial", "suspended")  # by i mod 20
INSTRUCTIONS = {"chat_transcripts": "P1Y", "visitor_activity": "P6M", "contact_records": "P2Y",
                "meeting_bookings": "P1Y"}  # every fifth account: within each rule's override_bounds
DUE_SHARE = 0.6
S3_BUCKETS = (("chat-attachments", False), ("call-recordings", True))


@dataclass(frozen=True)
class Table:
    """One table of the demo schema as the bench fills and checks it."""

    name: str
    location: str  # the inventory location whose cutoff applies
    anchors: tuple[str, ...]  # timestamp columns, all set to the row's time
    period_days: int  # the shipped default period (EEA): ages spread over period / (1 - DUE_SHARE)
    filler: str  # the other columns' values, SQL


TABLES = (
    Table("chat_conversations", "chat_conversations", ("created_at", "last_message_at"), 730,
          "visitor_email, visitor_ip) SELECT g, {acct}, {ts}, {ts}, 'v' || g || '@example.invalid', '192.0.2.1'"),
    Table("meetings", "meetings", ("created_at",), 730,
          "attendee_email) SELECT g, {acct}, {ts}, 'm' || g || '@example.invalid'"),
    Table("visitors", "visitors", ("first_seen_at", "last_seen_at"), 396,
          "cookie_id) SELECT g, {acct}, {ts}, {ts}, 'c' || g"),
    Table("page_views", "page_views", ("viewed_at",), 396, "url) SELECT g, {acct}, {ts}, '/pricing'"),
    Table("contacts", "contacts", ("created_at", "last_engaged_at"), 1096,
          "email) SELECT g, {acct}, {ts}, {ts}, 'k' || g || '@example.invalid'"),
    Table("crm_sync_queue", "crm_sync_queue", ("created_at",), 90, "payload) SELECT g, {acct}, {ts}, '{{}}'"),
    Table("email_events", "email_events", ("sent_at",), 30,
          "recipient) SELECT g, {acct}, {ts}, 'r' || g || '@example.invalid'"),
    Table("app_users", "app_users", ("created_at", "last_login_at"), 1096,
          "email, full_name, last_login_ip) SELECT g, {acct}, {ts}, {ts}, 'u' || g || '@example.invalid', "
          "'Synthetic User', '192.0.2.7'"),
    Table("invoices", "invoices", ("issued_at",), 3652,
          "billing_contact, amount_cents) SELECT g, {acct}, {ts}, 'b' || g || '@example.invalid', 12000"),
)
ANONYMIZED = "app_users"  # its rule anonymizes: rows stay, identifying columns go


def account_id(i: int) -> str:
    return f"acct_{i:05d}"


def to_account(row: Mapping[str, Any]) -> Any:
    """An ``Account`` from a registry row (the model takes timestamps as ISO-8601 strings)."""
    from retention.rules import Account

    return Account.model_validate({k: v.isoformat() if isinstance(v, datetime) else v
                                   for k, v in row.items() if v is not None})


def account_rows(n: int, now: datetime) -> list[dict[str, Any]]:
    """The registry: n accounts, three jurisdictions, three states, instructions on every fifth."""
    created = datetime(2019, 1, 1, tzinfo=UTC)
    return [{"id": account_id(i), "customer": f"Customer {i} Ltd", "state": STATES[i % len(STATES)],
             "jurisdiction": JURISDICTIONS[i % len(JURISDICTIONS)], "created_at": created,
             "contract_end": now.replace(year=now.year + 1),
             "instructions": INSTRUCTIONS if i % 5 == 0 else None} for i in range(n)]


# -- seeding (parent) ------------------------------------------------------------------------------

def seed_template(server_url: str, name: str, accounts: int, rows: int, now: datetime) -> dict[str, int]:
    """Create database ``name`` with the demo schema, the accounts and ``rows`` rows in all; returns rows per table."""
    import sqlalchemy as sa

    from retention.embedded import APP, VAULT, create_database

    url = create_database(server_url, name)
    engine = sa.create_engine(url)
    per_unit = rows // (len(TABLES) + 2)  # chat_messages: two per conversation
    counts: dict[str, int] = {}
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {VAULT}"))
        conn.execute(sa.text("CREATE SCHEMA bench"))
    APP.create_all(engine)
    registry = account_rows(accounts, now)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text(
            "INSERT INTO accounts (id, customer, state, jurisdiction, created_at, contract_end, instructions) "
            "SELECT * FROM unnest(CAST(:id AS text[]), CAST(:customer AS text[]), CAST(:state AS text[]), "
            "CAST(:jurisdiction AS text[]), CAST(:created_at AS timestamptz[]), CAST(:contract_end AS timestamptz[]), "
            "CAST(:instructions AS jsonb[]))"),
            {k: [r[k] if k != "instructions" else (json.dumps(r[k]) if r[k] else None) for r in registry]
             for k in ("id", "customer", "state", "jurisdiction", "created_at", "contract_end", "instructions")})
        for table in TABLES:
            span = table.period_days / (1 - DUE_SHARE)
            # Row g: account g mod n; its time falls from `span` days ago (g = 1) to now (g = per_unit).
            ts = f"(CAST(:now AS timestamptz) - ((:m - g) + 0.5) / :m * interval '{span:.3f} days')"
            acct = "'acct_' || lpad((g % :n)::text, 5, '0')"  # account_id(g mod n)
            columns = ", ".join(("id", "account_id", *table.anchors))
            started = time.perf_counter()
            conn.execute(sa.text(f"INSERT INTO {table.name} ({columns}, "
                                 + table.filler.format(acct=acct, ts=ts) + " FROM generate_series(1, :m) AS g"),
                         {"now": now, "m": per_unit, "n": accounts})
            counts[table.name] = per_unit
            log(f"seeded {table.name}: {per_unit:,} rows in {time.perf_counter() - started:.1f} s")
            if table.name == "chat_conversations":
                conn.execute(sa.text("INSERT INTO chat_messages (id, conversation_id, body, created_at) "
                                     "SELECT 2 * c.id - k, c.id, '(synthetic)', c.created_at "
                                     "FROM chat_conversations c, generate_series(0, 1) AS k"))
                counts["chat_messages"] = 2 * per_unit
        for name in (*counts, "accounts"):
            conn.execute(sa.text(f"VACUUM (ANALYZE) {name}"))
        conn.execute(sa.text("CHECKPOINT"))
    engine.dispose()
    return counts


def write_cutoffs(url: str, accounts: int, at: datetime) -> int:
    """The rules' cutoff per account and SQL location into bench.cutoffs; returns how many pairs act."""
    import pendulum
    import sqlalchemy as sa

    from retention.engine.planner import sweep_step
    from retention.rules import load_ruleset, resolve

    ruleset = load_ruleset(REPO / "retention_rules")
    when = pendulum.instance(at)
    records: dict[str, list[Any]] = {"location": [], "a": [], "cutoff": [], "action": []}
    for row in account_rows(accounts, at):
        account = to_account(row)
        for table in TABLES:
            step = sweep_step(resolve(ruleset, account, data_classes()[table.location], when, []), account)
            selector = getattr(step, "selector", None)
            if selector is None or selector.cutoff is None:
                continue  # kept (or all of it: none of these accounts is terminated, so it does not happen)
            records["location"].append(table.location)
            records["a"].append(account.id)
            records["cutoff"].append(selector.cutoff)
            records["action"].append(step.action)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS bench.cutoffs"))
        conn.execute(sa.text("CREATE TABLE bench.cutoffs AS SELECT * FROM unnest(CAST(:location AS text[]), "
                             "CAST(:a AS text[]), CAST(:cutoff AS timestamptz[]), CAST(:action AS text[])) "
                             "AS c(location, account_id, cutoff, action)"), records)
        conn.execute(sa.text("CREATE UNIQUE INDEX ON bench.cutoffs (location, account_id)"))
        conn.execute(sa.text("ANALYZE bench.cutoffs"))
    engine.dispose()
    return len(records["a"])


@cache
def data_classes() -> dict[str, str]:
    """The shipped inventory's locations and their data classes."""
    from retention.rules import load_ruleset
    from retention.rules.inventory import load_inventory

    inventory = load_inventory(REPO / "retention_rules" / "systems.yaml", load_ruleset(REPO / "retention_rules"))
    return {location: spec.data_class for location, spec in inventory.locations.items()}


# -- what should be left, and what is ---------------------------------------------------------------

def _past_cutoff(table: Table) -> str:
    """Rows of ``table`` at or before their account's cutoff (the rows a sweep acts on)."""
    # Every timestamp column of a seeded row holds the same time, so the rule's anchor (creation or last
    # activity) is the first of them whichever the rule names.
    return (f"FROM {table.name} t JOIN bench.cutoffs c ON c.location = '{table.location}' "
            f"AND c.account_id = t.account_id WHERE t.{table.anchors[0]} <= c.cutoff")


def census(url: str) -> dict[str, dict[str, int]]:
    """Per table: rows, rows past their cutoff (app_users: past it and still identifiable)."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    out: dict[str, dict[str, int]] = {}
    with engine.connect() as conn:
        for table in TABLES:
            past = _past_cutoff(table)
            if table.name == ANONYMIZED:
                past += " AND (t.last_login_ip IS NOT NULL OR t.email !~ '^[0-9a-f]{64}$')"
            out[table.name] = {"rows": conn.execute(sa.text(f"SELECT count(*) FROM {table.name}")).scalar_one(),
                               "past_cutoff": conn.execute(sa.text(f"SELECT count(*) {past}")).scalar_one()}
        messages_past = conn.execute(sa.text(
            "SELECT count(*) FROM chat_messages m JOIN chat_conversations t ON t.id = m.conversation_id "
            "JOIN bench.cutoffs c ON c.location = 'chat_conversations' AND c.account_id = t.account_id "
            "WHERE t.created_at <= c.cutoff")).scalar_one()
        out["chat_messages"] = {"rows": conn.execute(sa.text("SELECT count(*) FROM chat_messages")).scalar_one(),
                                "past_cutoff": messages_past}
    engine.dispose()
    return out


def expected_after(before: dict[str, dict[str, int]]) -> dict[str, int]:
    """Rows each table must hold after a sweep: all but the due ones (app_users: all of them)."""
    return {name: c["rows"] if name == ANONYMIZED else c["rows"] - c["past_cutoff"] for name, c in before.items()}


def judge(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]) -> tuple[bool, str, int]:
    expected = expected_after(before)
    wrong = {name: (after[name]["rows"], expected[name], after[name]["past_cutoff"])
             for name in expected if after[name]["rows"] != expected[name] or after[name]["past_cutoff"]}
    left = sum(after[name]["rows"] for name in after)
    if not wrong:
        return True, (f"{left:,} rows remain = exactly those not due, in all {len(after)} tables "
                      f"({after[ANONYMIZED]['rows']:,} app_users, the due ones anonymized)"), 0
    detail = "; ".join(f"{n}: {r:,} rows (expected {e:,}), {p:,} past the cutoff" for n, (r, e, p) in wrong.items())
    return False, f"FAILED: {detail}", sum(max(r - e, 0) + p for r, e, p in wrong.values())


def due_rows(before: dict[str, dict[str, int]]) -> int:
    """The job's size: rows deleted plus rows anonymized."""
    return sum(c["past_cutoff"] for c in before.values())


# -- the DBA's statements (parent) ------------------------------------------------------------------

def dba_statements() -> list[str]:
    """Per table one statement over every account's cutoff (chat messages before their conversations)."""
    cut = "bench.cutoffs c"
    statements = [
        "DELETE FROM chat_messages m USING chat_conversations t, bench.cutoffs c WHERE m.conversation_id = t.id "
        "AND c.location = 'chat_conversations' AND c.account_id = t.account_id AND t.created_at <= c.cutoff"]
    for table in TABLES:
        where = _past_cutoff(table).split(" WHERE ", 1)[1]
        on = f"c.location = '{table.location}' AND c.account_id = t.account_id AND {where}"
        if table.name == ANONYMIZED:
            statements.append(
                f"UPDATE {table.name} t SET last_login_ip = NULL, "
                "email = encode(sha256(convert_to(t.email || 'salt', 'UTF8')), 'hex'), "
                "full_name = encode(sha256(convert_to(t.full_name || 'salt', 'UTF8')), 'hex') "
                f"FROM {cut} WHERE {on} AND (t.last_login_ip IS NOT NULL OR t.email !~ '^[0-9a-f]{{64}}$')")
        else:
            statements.append(f"DELETE FROM {table.name} t USING {cut} WHERE {on}")
    return statements


