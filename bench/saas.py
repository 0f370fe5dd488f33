"""A sweep at SaaS scale: thousands of accounts over the demo application's tables, per-account cutoffs.

The application database is the demo schema (``retention.embedded.APP``) plus the ``accounts`` table the
registry reads. Accounts are spread over three jurisdictions of the shipped rules (EEA, UK, US-CA), in the
states active, trial and suspended, and every fifth one carries its own instructions within the rules' bounds,
so cutoffs differ per account and per table. Every table gets the same number of rows per account (chat
messages two per conversation), row ``g`` belongs to account ``g mod n`` (interleaved, as a shared database
holds them) and ids grow with time; ages are spread so that about 60 % of the rows are past the shipped
default periods. Seeding is ``INSERT ... SELECT generate_series`` once into a template database; every run
starts from a ``CREATE DATABASE ... TEMPLATE`` copy of it.

The cutoffs are the rules' (``resolve`` and the sweep's step for each account and location, at one instant),
written to ``bench.cutoffs`` in the database. Both contenders act on exactly those:

- the engine, in a child process as the CLI runs it: ``plan_sweep`` over every location of the shipped
  inventory (the S3 locations' buckets exist, empty), ``execute_location`` and ``verify_location`` for each,
  ``finish_sweep``; a SQLite ledger file;
- what a DBA would run instead: per table one ``DELETE ... USING unnest(accounts, cutoffs)`` joined on the
  account (chat messages through their conversation first; ``app_users`` one ``UPDATE`` that clears and
  hashes the columns the inventory names), each statement its own transaction.

Verification re-counts every table against ``bench.cutoffs``: the rows left must be exactly those whose anchor
is after their account's cutoff (``app_users``: every row left, none past the cutoff still identifiable).
Transactions are timed on the client: SQLAlchemy's begin/commit/rollback events on the engine's connection
pool (the engine child) or around each statement (the DBA), so "longest transaction" is wall time from BEGIN
to COMMIT as the client saw it, counts and verification queries included.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from common import REPO, MotoProcess, Row, log, tail

PEAK_RSS_LIMIT_MB = 300
PLAN_LIMIT_S = 120
SQL_RATIO = 0.8
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


def dba_run(url: str) -> dict[str, Any]:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    longest = total = 0.0
    affected = 0
    with engine.connect() as conn:
        for statement in dba_statements():
            started = time.perf_counter()
            with conn.begin():
                affected += conn.execute(sa.text(statement)).rowcount
            seconds = time.perf_counter() - started
            total += seconds
            longest = max(longest, seconds)
    engine.dispose()
    return {"execute_s": total, "longest_tx_s": longest, "affected": affected, "statements": len(dba_statements())}


# -- the engine (child) -----------------------------------------------------------------------------

def _vm(name: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


class TransactionClock:
    """Longest BEGIN..COMMIT/ROLLBACK the client saw on an engine's connections."""

    def __init__(self, engine: Any) -> None:
        from sqlalchemy import event

        self.longest = 0.0
        self.count = 0
        event.listen(engine, "begin", self._begin)
        event.listen(engine, "commit", self._end)
        event.listen(engine, "rollback", self._end)

    def _begin(self, conn: Any) -> None:
        conn.info["bench_tx_started"] = time.perf_counter()

    def _end(self, conn: Any) -> None:
        started = conn.info.pop("bench_tx_started", None)
        if started is not None:
            self.count += 1
            self.longest = max(self.longest, time.perf_counter() - started)


def child(url: str, endpoint: str, ledger_path: str, at_iso: str, accounts_n: str) -> None:
    import pendulum
    import sqlalchemy as sa

    from retention.embedded import airflow_connections
    from retention.embedded import s3_client as embedded_client
    from retention.engine import SweepContext, execute_location, finish_sweep, plan_sweep, verify_location
    from retention.ledger import Ledger
    from retention.rules.inventory import S3Location
    from retention.settings import Settings
    from retention.stores.s3 import S3Store
    from retention.stores.sql import SqlStore

    out: dict[str, Any] = {"rss_after_imports_mb": round(_vm("VmRSS"), 1)}
    at = pendulum.parse(at_iso)
    engine = sa.create_engine(url)
    clock = TransactionClock(engine)
    client = embedded_client(endpoint)

    def open_store(location_id: str, spec: Any) -> Any:
        if isinstance(spec, S3Location):
            return S3Store(location_id, spec, client)
        return SqlStore(location_id, spec, engine)

    # The registry as a deployment reads it: retention_rules/registry.yaml's sql source, the application's
    # accounts table through the app_db Airflow Connection (here: the copy this run works on).
    os.environ.pop("RETENTION_ACCOUNTS_FILE", None)
    os.environ.update(airflow_connections(url, endpoint))
    settings = Settings.from_env(rules_dir=REPO / "retention_rules")
    with Ledger.open(f"sqlite:///{ledger_path}") as ledger:
        started = time.perf_counter()
        ctx = SweepContext.load(settings, ledger, open_store=open_store)  # rules, inventory, registry
        out["load_s"] = round(time.perf_counter() - started, 3)
        out["accounts"] = len(ctx.accounts)
        out["registry"] = ctx.registry.snapshot() if ctx.registry else None
        if len(ctx.accounts) != int(accounts_n):
            raise RuntimeError(f"read {len(ctx.accounts)} accounts, expected {accounts_n}")
        inventory = ctx.inventory
        started = time.perf_counter()
        # ~60 % of every table is due, more than the mass-deletion share: the run acknowledges every location,
        # as an operator would after reading the dry run.
        plan = plan_sweep(ctx, at, dry_run=False, actor="bench", acknowledged=tuple(inventory.locations))
        out["plan_s"] = round(time.perf_counter() - started, 3)
        out["plan_longest_tx_s"] = round(clock.longest, 4)
        out.update(planned_tasks=plan.tasks, planned_estimate=plan.estimated, rss_after_plan_mb=round(_vm("VmRSS"), 1))
        locations = [loc for ids in plan.locations.values() for loc in ids]
        clock.longest = 0.0
        started = time.perf_counter()
        affected = {loc: execute_location(ctx, plan.run_id, loc, actor="bench") for loc in locations}
        out["execute_s"] = round(time.perf_counter() - started, 3)
        out["execute_longest_tx_s"] = round(clock.longest, 4)
        started = time.perf_counter()
        residue = sum(verify_location(ctx, plan.run_id, loc, actor="bench") for loc in locations)
        out["verify_s"] = round(time.perf_counter() - started, 3)
        report = finish_sweep(ledger, plan.run_id, actor="bench")
        out.update(status=report.status, affected=affected, residue_tasks=residue, transactions=clock.count,
                   vm_hwm_mb=round(_vm("VmHWM"), 1))
    engine.dispose()
    out["ledger_bytes"] = sum(p.stat().st_size for p in Path(ledger_path).parent.glob(Path(ledger_path).name + "*")
                              if p.is_file())
    print(json.dumps(out), flush=True)


def engine_run(url: str, moto: MotoProcess, work: Path, at: datetime, accounts: int) -> dict[str, Any]:
    ledger = work / "ledger-saas.db"
    for p in work.glob("ledger-saas.db*"):
        if p.is_dir():
            import shutil

            shutil.rmtree(p)
        else:
            p.unlink()
    moto.reset()
    for bucket, versioned in S3_BUCKETS:  # the inventory's S3 locations exist, empty: planned, nothing to do
        moto.seed(bucket, "tenants/", [], versioned=versioned)
    out_path, err_path = work / "saas-child.out", work / "saas-child.err"
    started = time.perf_counter()
    with out_path.open("w") as out, err_path.open("w") as err:
        proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--child", url, moto.endpoint,
                                 str(ledger), at.isoformat(), str(accounts)], stdout=out, stderr=err,
                                env=os.environ.copy())
        watchdog = threading.Timer(3600, proc.kill)  # bounded: a stuck sweep is killed
        watchdog.start()
        try:
            code = proc.wait()
        finally:
            watchdog.cancel()
    wall = time.perf_counter() - started
    try:
        result: dict[str, Any] = json.loads(out_path.read_text().strip().splitlines()[-1])
    except (ValueError, IndexError):
        result = {"error": tail(err_path.read_text(), 8), "exit_code": code}
    result["child_wall_s"] = round(wall, 2)
    return result


# -- scenarios (parent) -------------------------------------------------------------------------------

def _copy(server_url: str, template: str, name: str) -> str:
    import sqlalchemy as sa

    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    admin.dispose()
    return sa.engine.make_url(server_url).set(database=name).render_as_string(hide_password=False)


def _drop(server_url: str, *names: str) -> None:
    import sqlalchemy as sa

    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for name in names:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def run_size(server_url: str, moto: MotoProcess, work: Path, accounts: int, rows: int,
             scenario: str, *, main: bool) -> list[Row]:
    """Seed once, then the DBA's statements and the engine's sweep, each on a fresh copy, both verified."""
    now = datetime.now(UTC).replace(microsecond=0)
    template = "saas_template"
    log(f"{scenario}: seeding {accounts:,} accounts, ~{rows:,} rows")
    started = time.perf_counter()
    counts = seed_template(server_url, template, accounts, rows, now)
    import sqlalchemy as sa

    template_url = sa.engine.make_url(server_url).set(database=template).render_as_string(hide_password=False)
    pairs = write_cutoffs(template_url, accounts, now)
    before = census(template_url)
    seed_s = time.perf_counter() - started
    due = due_rows(before)
    total = sum(counts.values())
    log(f"{scenario}: {total:,} rows, {due:,} due ({due / total:.0%}), {pairs:,} account x table cutoffs; "
        f"seeded in {seed_s:.0f} s")
    single = "one statement per table over all cutoffs (DBA)"
    rows_out: list[Row] = []
    try:
        url = _copy(server_url, template, "saas_run")
        log(f"{scenario}: {single}")
        dba = dba_run(url)
        ok, text, left = judge(before, census(url))
        rows_out.append(Row(scenario, single, due, dba["execute_s"], verified=ok, verification=text, left=left,
                            extra={k: round(v, 4) if isinstance(v, float) else v for k, v in dba.items()}))
        url = _copy(server_url, template, "saas_run")
        log(f"{scenario}: engine sweep (child process)")
        result = engine_run(url, moto, work, now, accounts)
        after = census(url)
        ok, text, left = judge(before, after)
        ok = ok and result.get("status") == "succeeded"
        if result.get("status") != "succeeded":
            text += f"; run {result.get('status') or result.get('error')}"
        execute_s = float(result.get("execute_s", float("nan")))
        target = (f">= {SQL_RATIO}x the single statements, every transaction <= 1 s, plan < {PLAN_LIMIT_S} s, "
                  f"peak RSS < {PEAK_RSS_LIMIT_MB} MB") if main else None
        row = Row(scenario, "engine (execute_location, all locations)", due, execute_s, reference=single,
                  verified=ok, verification=text, left=left, target=target,
                  extra={"peak_rss_mb": result.get("vm_hwm_mb"), "longest_tx_s": result.get("execute_longest_tx_s"),
                         "seed_s": round(seed_s, 1), "rows_total": total, "accounts": accounts,
                         "cutoff_pairs": pairs, "tables": before, **result})
        rows_out.append(row)
        plan_s = float(result.get("plan_s", float("nan")))
        rows_out.append(Row(scenario, "engine plan (plan_sweep, every location)", due, plan_s, verified=ok,
                            verification="plan of the run above", extra={
                                "per_row_us": round(plan_s / total * 1e6, 3), "accounts": accounts,
                                "load_s (rules, inventory, registry)": result.get("load_s"),
                                "locations": len(data_classes()), "rows_total": total}))
        rows_out.append(Row(scenario, "engine incl. plan + verify", due,
                            plan_s + execute_s + float(result.get("verify_s", float("nan"))), reference=single,
                            verified=ok, verification=text, left=left))
        row.extra["execute_per_row_us"] = round(execute_s / max(due, 1) * 1e6, 3)
        row.extra["plan_per_row_us"] = round(plan_s / total * 1e6, 3)
        rows_out[0].extra["execute_per_row_us"] = round(dba["execute_s"] / max(due, 1) * 1e6, 3)
    finally:
        _drop(server_url, "saas_run", template)
    return rows_out


def judge_targets(rows: list[Row]) -> None:
    for row in rows:
        if row.target is None or not row.scenario.startswith("SaaS"):
            continue
        e = row.extra
        longest = e.get("longest_tx_s")
        row.target_met = bool(row.verified and row.ratio is not None and row.ratio >= SQL_RATIO
                              and longest is not None and longest <= 1.0
                              and float(e.get("plan_s", float("inf"))) < PLAN_LIMIT_S
                              and e.get("peak_rss_mb") is not None and e["peak_rss_mb"] < PEAK_RSS_LIMIT_MB)


def scenario_rows(server_url: str, moto: MotoProcess, work: Path, accounts: int, rows: int) -> list[Row]:
    return run_size(server_url, moto, work, accounts, rows,
                    f"SaaS: {accounts:,} accounts, {rows / 1e6:g}M rows, per-account cutoffs", main=True)


def growth_rows(server_url: str, moto: MotoProcess, work: Path, sizes: list[int], rows: int) -> list[Row]:
    out: list[Row] = []
    for accounts in sizes:
        out += run_size(server_url, moto, work, accounts, rows,
                        f"Growth: {accounts:,} accounts, {rows / 1e6:g}M rows", main=False)
    return out


if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1] == "--child":
        child(*sys.argv[2:])
    else:
        argparse.ArgumentParser(description="run through bench/run.py").print_help()
        sys.exit(2)
