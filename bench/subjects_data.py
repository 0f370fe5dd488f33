"""The subject-request bench's data: persons across the demo schema, the requests, what each contender must do,
and the census both contenders are verified by.

Every account table of the demo schema (``retention.embedded.APP``) gets the same number of rows; row ``g``
belongs to person ``g mod P`` (P = rows / 10, so each person has about ten rows in every table) and person ``p``
to account ``p mod A``. Persons ``2k`` and ``2k + 1`` share one e-mail address in two different accounts, so an
erasure that reached past its account would delete the other person's rows and fail the census. Chat messages:
one per conversation. Which columns hold an e-mail address is the shipped inventory's ``subjects:`` (kind
``email``); a column of kind ``visitor_id`` or ``phone`` gets a value derived from the person. Seeding is
``INSERT ... SELECT generate_series``, no row in Python.

What an erasure does at each location is decided as a request's preview decides it, from the rule the account's
state selects: kept when the rule's period comes from a statute or it keeps the data isolated (invoices in the
EEA and the UK), anonymized when the rule anonymizes and the location says how (``app_users``), else deleted.
Both contenders do exactly that.

``census`` counts per table the rows, the requested persons' rows still identifiable, and a checksum of every
other row (``sum(hashtext(row::text))``), so "nobody else touched" is checked row by row, not only counted.
``explain_lookups`` plans the statement ``SqlStore.count`` itself sends for a subject, at each location.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from common import REPO, log
from saas_data import account_id, account_rows, to_account

Action = Literal["delete", "anonymize", "keep"]
ROWS_PER_PERSON = 10  # per table
ROUNDS = 3  # identity expansion, as retention.requests.expand.ROUNDS
CHILD = ("chat_messages", "chat_conversations", "conversation_id")  # (child, parent, foreign key)


@dataclass(frozen=True)
class Request:
    """One erasure request: one person's e-mail address in one account."""

    index: int
    account_id: str
    email: str


@dataclass(frozen=True)
class Location:
    """A SQL location the inventory can find a person in, as both contenders act on it."""

    id: str
    table: str
    data_class: str
    columns: dict[str, str]  # identifier kind -> column
    indexes: dict[str, str]  # identifier kind -> the index the inventory declares for its lookup
    anonymize_null: tuple[str, ...]
    anonymize_hash: tuple[str, ...]

    @property
    def anonymizes(self) -> bool:
        return bool(self.anonymize_null or self.anonymize_hash)


def email_of(person: int) -> str:
    return f"s{person // 2}@example.invalid"


def load_specs() -> tuple[Any, Any]:
    """The shipped rules and inventory."""
    from retention.rules import load_ruleset
    from retention.rules.inventory import load_inventory

    ruleset = load_ruleset(REPO / "retention_rules")
    return ruleset, load_inventory(REPO / "retention_rules" / "systems.yaml", ruleset)


def subject_locations(inventory: Any) -> list[Location]:
    """Every SQL location of the inventory with ``subjects:``; refuses to run when none has an e-mail column."""
    from retention.rules.inventory import SqlLocation

    out = []
    for location_id, spec in inventory.locations.items():
        if isinstance(spec, SqlLocation) and spec.subjects:
            anonymize = spec.anonymize
            out.append(Location(location_id, spec.table, spec.data_class,
                                {kind: s.column for kind, s in spec.subjects.items()},
                                {kind: s.index for kind, s in spec.subjects.items()},
                                tuple(anonymize.set_null) if anonymize else (),
                                tuple(anonymize.hash) if anonymize else ()))
    if not any("email" in loc.columns for loc in out):
        raise SystemExit("retention_rules/systems.yaml declares no email subject column: nothing to benchmark")
    return out


def erasure_action(ruleset: Any, account: Any, location: Location) -> tuple[Action, str]:
    """(action, rule id) of an erasure at this location for this account, as a request's preview decides it."""
    from retention.rules.resolver import select_rule

    rule = select_rule(ruleset, account, location.data_class)
    if rule.basis.kind == "statute" or rule.action == "retain_isolated":
        return "keep", rule.id
    if rule.action == "anonymize" and location.anonymizes:
        return "anonymize", rule.id
    return "delete", rule.id


# -- seeding ------------------------------------------------------------------------------------------

def _value(column: Any, kind: str | None) -> str:
    """The SQL expression filling one column of row ``g`` (person ``p``)."""
    import sqlalchemy as sa

    if column.name == "id":
        return "g"
    if column.name == "account_id":
        return "'acct_' || lpad((p % :accounts)::text, 5, '0')"  # saas_data.account_id(p mod accounts)
    by_kind = {"email": "'s' || (p / 2) || '@example.invalid'",  # email_of(p)
               "visitor_id": "'v-' || p", "phone": "'+1555' || lpad(p::text, 7, '0')", "user_id": "'u-' || p"}
    if kind is not None:
        return by_kind[kind]
    if isinstance(column.type, sa.DateTime):
        return "CAST(:now AS timestamptz) - g * interval '1 minute'"
    if isinstance(column.type, sa.BigInteger | sa.Integer):
        return "g"
    if isinstance(column.type, sa.Text | sa.String):
        return "'synthetic'"
    raise SystemExit(f"bench/subjects_data.py: no synthetic value for {column.table.name}.{column.name} "
                     f"({column.type}); add one")


def persons_of(rows: int, accounts: int) -> int:
    return max(rows // ROWS_PER_PERSON, 2 * accounts)


def seed_template(server_url: str, name: str, locations: list[Location], accounts: int, rows: int,
                  now: datetime) -> dict[str, int]:
    """Create database ``name``: the demo schema, the accounts, ``rows`` rows in every table, and the index the
    inventory declares for every subject column (unless the schema already made it). Returns rows per table."""
    import sqlalchemy as sa

    from retention.embedded import APP, VAULT, create_database

    url = create_database(server_url, name)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {VAULT}"))
        conn.execute(sa.text("CREATE SCHEMA bench"))
    APP.create_all(engine)
    kinds = {loc.table: {column: kind for kind, column in loc.columns.items()} for loc in locations}
    counts: dict[str, int] = {}
    registry = account_rows(accounts, now)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text(
            "INSERT INTO accounts (id, customer, state, jurisdiction, created_at, contract_end) "
            "SELECT * FROM unnest(CAST(:id AS text[]), CAST(:customer AS text[]), CAST(:state AS text[]), "
            "CAST(:jurisdiction AS text[]), CAST(:created_at AS timestamptz[]), CAST(:contract_end AS timestamptz[]))"),
            {k: [r[k] for r in registry] for k in ("id", "customer", "state", "jurisdiction", "created_at",
                                                   "contract_end")})
        for table in APP.sorted_tables:
            if table.schema is not None or table.name in ("accounts", CHILD[0]):
                continue
            columns = list(table.columns)
            values = ", ".join(_value(c, kinds.get(table.name, {}).get(c.name)) for c in columns)
            started = time.perf_counter()
            conn.execute(sa.text(f"INSERT INTO {table.name} ({', '.join(c.name for c in columns)}) "
                                 f"OVERRIDING SYSTEM VALUE SELECT {values} "
                                 "FROM generate_series(1, :rows) AS g, LATERAL (SELECT g % :persons AS p) AS person"),
                         {"rows": rows, "persons": persons_of(rows, accounts), "accounts": accounts, "now": now})
            counts[table.name] = rows
            log(f"seeded {table.name}: {rows:,} rows in {time.perf_counter() - started:.1f} s")
        child, parent, fk = CHILD
        conn.execute(sa.text(f"INSERT INTO {child} (id, {fk}, body, created_at) OVERRIDING SYSTEM VALUE "
                             f"SELECT id, id, '(synthetic)', created_at FROM {parent}"))
        counts[child] = rows
        for loc in locations:
            for kind, column in loc.columns.items():
                conn.execute(sa.text(f"CREATE INDEX IF NOT EXISTS {loc.indexes[kind]} ON {loc.table} ({column})"))
        for table_name in (*counts, "accounts"):
            conn.execute(sa.text(f"VACUUM (ANALYZE) {table_name}"))
        conn.execute(sa.text("CHECKPOINT"))
    engine.dispose()
    return counts


# -- the requests and what they must leave -------------------------------------------------------------

def pick_requests(n: int, accounts: int, rows: int, seed: int = 19) -> list[Request]:
    """``n`` distinct random persons, each one erasure request by their e-mail address in their account."""
    chosen = random.Random(seed).sample(range(persons_of(rows, accounts)), n)
    return [Request(i, account_id(p % accounts), email_of(p)) for i, p in enumerate(chosen)]


def decide(requests: list[Request], locations: list[Location], accounts: int,
           now: datetime) -> dict[tuple[str, str], tuple[Action, str]]:
    """(account, location) -> (action, rule id) for every requested account and location."""
    ruleset, _ = load_specs()
    registry = {row["id"]: to_account(row) for row in account_rows(accounts, now)}
    return {(r.account_id, loc.id): erasure_action(ruleset, registry[r.account_id], loc)
            for r in requests for loc in locations}


def write_requested(url: str, requests: list[Request], locations: list[Location],
                    actions: dict[tuple[str, str], tuple[Action, str]]) -> dict[str, int]:
    """Before anything runs, in the database both contenders start from a copy of: ``bench.linked`` (account, kind,
    value), each request's e-mail address and the identifiers linked to it in its account (the values of every
    subject column on the rows holding one already, until nothing new appears, at most ``ROUNDS`` rounds, as
    ``requests.expand`` does), and ``bench.requested_rows`` (table, id, action): every row the requests must delete
    or anonymize. Returns the number of identifiers and of rows per action."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE bench.linked AS SELECT a AS account_id, 'email' AS kind, e AS value "
                             "FROM unnest(CAST(:a AS text[]), CAST(:e AS text[])) AS r(a, e)"),
                     {"a": [r.account_id for r in requests], "e": [r.email for r in requests]})
        conn.execute(sa.text("CREATE UNIQUE INDEX ON bench.linked (account_id, kind, value)"))
        for _ in range(ROUNDS):
            added = 0
            for loc in locations:
                holds = " OR ".join(f"EXISTS (SELECT 1 FROM bench.linked l WHERE l.account_id = t.account_id "
                                    f"AND l.kind = '{kind}' AND l.value = t.{column})"
                                    for kind, column in loc.columns.items())
                for kind, column in loc.columns.items():
                    added += conn.execute(sa.text(
                        f"INSERT INTO bench.linked SELECT DISTINCT t.account_id, '{kind}', t.{column} "
                        f"FROM {loc.table} t WHERE t.{column} IS NOT NULL AND ({holds}) "
                        "ON CONFLICT DO NOTHING")).rowcount
            if not added:
                break
        conn.execute(sa.text("CREATE TABLE bench.actions AS SELECT * FROM unnest(CAST(:a AS text[]), "
                             "CAST(:l AS text[]), CAST(:x AS text[])) AS x(account_id, location, action)"),
                     {"a": [a for a, _ in actions], "l": [loc for _, loc in actions],
                      "x": [act for act, _ in actions.values()]})
        conn.execute(sa.text("CREATE TABLE bench.requested_rows (tbl text, id bigint, action text)"))
        for loc in locations:
            holds = " OR ".join(f"(l.kind = '{kind}' AND l.value = t.{column})" for kind, column in loc.columns.items())
            conn.execute(sa.text(
                f"INSERT INTO bench.requested_rows SELECT DISTINCT '{loc.table}', t.id, x.action FROM {loc.table} t "
                f"JOIN bench.linked l ON l.account_id = t.account_id AND ({holds}) "
                f"JOIN bench.actions x ON x.account_id = t.account_id AND x.location = '{loc.id}' "
                "WHERE x.action <> 'keep'"))
            if loc.table == CHILD[1]:
                conn.execute(sa.text(
                    f"INSERT INTO bench.requested_rows SELECT '{CHILD[0]}', m.id, q.action FROM {CHILD[0]} m "
                    f"JOIN bench.requested_rows q ON q.tbl = '{CHILD[1]}' AND q.id = m.{CHILD[2]}"))
        conn.execute(sa.text("CREATE INDEX ON bench.requested_rows (tbl, id)"))
        conn.execute(sa.text("ANALYZE bench.requested_rows"))
        out = {f"rows_{action}": int(n) for action, n in conn.execute(sa.text(
            "SELECT action, count(*) FROM bench.requested_rows GROUP BY action")).all()}
        out["identifiers"] = int(conn.execute(sa.text("SELECT count(*) FROM bench.linked")).scalar_one())
    engine.dispose()
    return out


def census(url: str, locations: list[Location]) -> dict[str, dict[str, int]]:
    """Per table: rows; requested rows still there (``requested_left``); requested rows still identifiable
    (present, and in an anonymized table still holding a value in a column the inventory clears or hashes); and
    the count and checksum of every other row."""
    import sqlalchemy as sa

    from retention.embedded import APP

    by_table = {loc.table: loc for loc in locations}
    engine = sa.create_engine(url)
    out: dict[str, dict[str, int]] = {}
    with engine.connect() as conn:
        for table in APP.sorted_tables:
            if table.schema is not None or table.name == "accounts":
                continue
            name = table.name
            mine = f"EXISTS (SELECT 1 FROM bench.requested_rows q WHERE q.tbl = '{name}' AND q.id = t.id)"
            loc = by_table.get(name)
            identifiable = mine
            if loc is not None and loc.anonymizes:
                still = [f"t.{c} IS NOT NULL" for c in loc.anonymize_null]
                still += [f"t.{c} !~ '^[0-9a-f]{{64}}$'" for c in loc.anonymize_hash]
                identifiable += f" AND ({' OR '.join(still)})"
            row = conn.execute(sa.text(
                f"SELECT count(*), count(*) FILTER (WHERE {mine}), count(*) FILTER (WHERE {identifiable}), "
                f"coalesce(sum(hashtext(t::text)::bigint) FILTER (WHERE NOT {mine}), 0) FROM {name} t")).one()
            out[name] = {"rows": row[0], "requested_left": row[1], "identifiable": row[2],
                         "rest_rows": row[0] - row[1], "rest_checksum": int(row[3])}
    engine.dispose()
    return out


def judge(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]) -> tuple[bool, str, int]:
    """Nothing of the requested persons identifiable; every other row exactly as before."""
    wrong = []
    for name, b in before.items():
        a = after[name]
        if a["identifiable"]:
            wrong.append(f"{name}: {a['identifiable']:,} requested rows still identifiable")
        if (a["rest_rows"], a["rest_checksum"]) != (b["rest_rows"], b["rest_checksum"]):
            wrong.append(f"{name}: other rows {b['rest_rows']:,} -> {a['rest_rows']:,}"
                         f"{'' if a['rest_checksum'] == b['rest_checksum'] else ', checksum changed'}")
    left = sum(a["identifiable"] for a in after.values())
    if wrong:
        return False, "FAILED: " + "; ".join(wrong), left
    deleted = sum(b["requested_left"] - a["requested_left"] for b, a in zip(before.values(), after.values(),
                                                                             strict=True))
    anonymized = sum(a["requested_left"] for a in after.values())
    return True, (f"0 of the requested persons' rows identifiable ({deleted:,} deleted, {anonymized:,} "
                  f"anonymized); the other {sum(a['rest_rows'] for a in after.values()):,} rows unchanged "
                  f"(count and checksum, {len(after)} tables)"), 0


# -- lookups through indexes ------------------------------------------------------------------------

def explain_lookups(app_url: str, locations: list[Location], subject_of: dict[str, list[str]],
                    account: str) -> list[dict[str, Any]]:
    """Per SQL location with subjects: the plan of ``SqlStore.count``'s own statement for one expanded subject."""
    import sqlalchemy as sa
    from sqlalchemy import event

    from retention.rules.subjects import Subject
    from retention.stores import Selector
    from retention.stores.sql import SqlStore

    _, inventory = load_specs()
    engine = sa.create_engine(app_url)
    subject = Subject.of(subject_of)
    captured: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        captured.append((statement, parameters))

    out = []
    for loc in locations:
        store = SqlStore(loc.id, inventory.locations[loc.id], engine)
        event.listen(engine, "before_cursor_execute", capture)
        try:
            store.count(Selector(account, subject=subject))
        finally:
            event.remove(engine, "before_cursor_execute", capture)
        statement, parameters = captured.pop()
        with engine.connect() as conn:
            plan = conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {statement}", parameters).scalar_one()
        nodes = list(_nodes(plan[0]["Plan"] if isinstance(plan, list) else json.loads(plan)[0]["Plan"]))
        used = sorted({n["Index Name"] for n in nodes if "Index Name" in n})
        scans = sorted({n["Node Type"] for n in nodes if "Scan" in n["Node Type"]})
        declared = sorted(set(loc.indexes.values()))
        ok = "Seq Scan" not in scans and bool(set(used) & set(declared))
        out.append({"location": loc.id, "kinds": sorted(loc.columns), "scans": scans, "indexes_used": used,
                    "indexes_declared": declared, "through_declared_index": ok,
                    "statement": statement, "plan": plan})
    engine.dispose()
    return out


def _nodes(plan: dict[str, Any]) -> Any:
    yield plan
    for child in plan.get("Plans", ()):
        yield from _nodes(child)


# -- the reference: what an engineer writes per request ------------------------------------------------

def reference_lookups(locations: list[Location]) -> list[tuple[str, list[str]]]:
    """(statement, kinds it returns): the identifiers linked to the e-mail address, one SELECT per table that
    holds an e-mail column beside other identifier columns (one round: the seeded links need no more)."""
    out = []
    for loc in locations:
        others = [kind for kind in loc.columns if kind != "email"]
        if "email" in loc.columns and others:
            out.append((f"SELECT DISTINCT {', '.join(loc.columns[k] for k in others)} FROM {loc.table} "
                        f"WHERE account_id = %(account)s AND {loc.columns['email']} = %(email)s", others))
    return out


def reference_statements(loc: Location, action: Action) -> list[str]:
    """The statements for one table: children first; anonymize as the inventory says; ``%(<kind>)s`` are arrays."""
    if action == "keep":
        return []
    where = ("account_id = %(account)s AND ("
             + " OR ".join(f"{column} = ANY(%({kind})s)" for kind, column in loc.columns.items()) + ")")
    if action == "anonymize":
        sets = [f"{c} = NULL" for c in loc.anonymize_null]
        sets += [f"{c} = encode(sha256(convert_to({c} || %(salt)s, 'UTF8')), 'hex')" for c in loc.anonymize_hash]
        return [f"UPDATE {loc.table} SET {', '.join(sets)} WHERE {where}"]
    statements = []
    if loc.table == CHILD[1]:
        statements.append(f"DELETE FROM {CHILD[0]} WHERE {CHILD[2]} IN (SELECT id FROM {loc.table} WHERE {where})")
    return [*statements, f"DELETE FROM {loc.table} WHERE {where}"]


def utc_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)
