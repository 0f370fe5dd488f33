"""PostgreSQL: delete the rows past a cutoff, the engine against plain DELETE statements.

The table mirrors the demo application's tables (retention.embedded.APP): a bigint primary key, an
indexed text account column, a timestamptz, one payload column. Ids grow with time, as they do in an
application, so the rows past the cutoff are the oldest ids. No child table and no foreign key points
at it: only the table's own rows are deleted (SqlStore refuses a table others reference with
ON DELETE CASCADE unless they are declared children, and there are none here).

Before each contender the table is dropped and loaded again (INSERT ... SELECT generate_series), then
indexed, VACUUM ANALYZEd and CHECKPOINTed, so every contender starts from the same physical state.
Afterwards the rows are counted: exactly the rows younger than the cutoff must remain.

Two layouts:
- one account holding all rows: the engine's single task against one DELETE with the same predicate
  (the issue's comparison, nothing but batching differs);
- 20 accounts, rows interleaved (row g belongs to account g mod 20, as rows of many customers arrive
  mixed): the engine plans one task per account and runs them set-based, as a sweep does, against one DELETE of every
  account's old rows at once and against 20 per-account DELETE statements.
"""

from __future__ import annotations

import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pendulum
import sqlalchemy as sa

from common import REPO, Row, combine, log

TABLE = "bench_events"
T0 = datetime(2022, 1, 1, tzinfo=UTC)
STEP = timedelta(seconds=10)  # created_at of row g is T0 + g * STEP
KEYSET_SPAN = 100_000  # ids per statement of the keyset DELETE loop
LOCK_LIMIT = 1.0  # seconds: no destructive transaction of the engine may take longer


def account_name(i: int) -> str:
    return f"acct_{i:02d}"


def seed(engine: sa.Engine, n: int, accounts: int) -> None:
    account = f"'acct_' || lpad(((g - 1) % {accounts})::text, 2, '0')" if accounts > 1 else f"'{account_name(0)}'"
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {TABLE}"))
        conn.execute(sa.text(f"CREATE TABLE {TABLE} (id bigint NOT NULL, account_id text NOT NULL, "
                             "created_at timestamptz NOT NULL, payload text)"))
        conn.execute(sa.text(f"INSERT INTO {TABLE} SELECT g, {account}, :t0 + g * interval '10 seconds', md5(g::text) "
                             "FROM generate_series(1, :n) AS g"), {"t0": T0, "n": n})
        conn.execute(sa.text(f"ALTER TABLE {TABLE} ADD PRIMARY KEY (id)"))
        conn.execute(sa.text(f"CREATE INDEX {TABLE}_account_id ON {TABLE} (account_id)"))
        conn.execute(sa.text(f"VACUUM (ANALYZE) {TABLE}"))
        conn.execute(sa.text("CHECKPOINT"))


def remaining(engine: sa.Engine, cutoff: datetime) -> tuple[int, int]:
    """(rows left in total, rows left at or before the cutoff)."""
    with engine.connect() as conn:
        return tuple(conn.execute(sa.text(
            f"SELECT count(*), count(*) FILTER (WHERE created_at <= :c) FROM {TABLE}"), {"c": cutoff}).one())


def timed_statements(engine: sa.Engine, statements: list[tuple[str, dict]]) -> tuple[float, int, float]:
    """Each statement in its own transaction; (total seconds, rows deleted, longest transaction)."""
    total_rows, longest = 0, 0.0
    started = time.perf_counter()
    for sql, params in statements:
        t = time.perf_counter()
        with engine.begin() as conn:
            total_rows += conn.execute(sa.text(sql), params).rowcount
        longest = max(longest, time.perf_counter() - t)
    return time.perf_counter() - started, total_rows, longest


def engine_delete(engine: sa.Engine, accounts: int, cutoff: datetime, ledger_dir: Path, *, bare: bool = False) -> dict:
    """Plan one delete task per account in a ledger run, then ``execute_location`` over them, as a sweep runs
    a location (set-based: one cohort of every account with the same anchor); bare: the store's own
    per-account batches/delete loop, no ledger."""
    from retention.engine import SweepContext, execute_location
    from retention.ledger import Ledger
    from retention.rules import load_ruleset
    from retention.rules.inventory import SqlLocation, SystemsFile
    from retention.stores.base import Due, Selector
    from retention.stores.sql import SqlStore

    spec = SqlLocation(kind="sql", data_class="bench_rows", conn_id="bench", table=TABLE, account_column="account_id",
                       key_column="id", timestamps={"created_at": "created_at"})
    store = SqlStore("bench_sql", spec, engine)
    names = [account_name(i) for i in range(accounts)]
    out: dict = {}
    if bare:
        started = time.perf_counter()
        affected = 0
        for name in names:
            for batch in store.batches(Selector(name, "created_at", cutoff)):
                affected += store.delete(batch).affected
        out.update(execute_s=time.perf_counter() - started, affected=affected)
    else:
        for p in ledger_dir.glob("ledger.db*"):  # the database, its journal and its task-claim lock directory
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        ledger_dir.mkdir(parents=True, exist_ok=True)
        ledger = Ledger.open(f"sqlite:///{ledger_dir / 'ledger.db'}")
        try:
            started = time.perf_counter()
            run_id = ledger.start_run("sweep", dry_run=False, as_of=pendulum.now("UTC"), rules_digest="0" * 64,
                                      actor="bench")
            # What the planner asks the store: every account's total and due rows, in one tally.
            tallies = store.tally(names, [Due(Selector(name, "created_at", cutoff)) for name in names])
            ledger.add_planned_tasks(run_id, [
                {"account_id": name, "data_class": "bench_rows", "location": "bench_sql", "action": "delete",
                 "rule_id": "bench", "anchor": "created_at", "cutoff": cutoff, "total_count": tallies[name].total,
                 "estimated_count": tallies[name].due} for name in names])
            tasks = ledger.tasks(run_id)
            out["plan_s"] = time.perf_counter() - started
            # The executor reads only the ledger and the store from the context.
            ctx = SweepContext(load_ruleset(REPO / "retention_rules"),
                               SystemsFile.model_validate({"locations": {"bench_sql": spec.model_dump()}}), {},
                               ledger, open_store=lambda _location, _spec: store)
            started = time.perf_counter()
            affected = execute_location(ctx, run_id, "bench_sql", actor="bench")
            out["execute_s"] = time.perf_counter() - started
            started = time.perf_counter()
            # As the verifier does per SQL location: one tally of the done tasks' selectors.
            residue = sum(t.due for t in store.tally(names, [Due(Selector(name, "created_at", cutoff))
                                                             for name in names]).values())
            out["store_verify_s"] = time.perf_counter() - started
            out.update(affected=affected, store_residue=residue, tasks=len(tasks),
                       ledger_events=sum(1 for _ in ledger.events()))
        finally:
            ledger.close()
    history = store.sizer.history
    in_tx = sum(h[2] for h in history)
    out.update(batches=len(history), longest_tx_s=max((h[2] for h in history), default=0.0),
               batch_tx_s_total=in_tx, outside_tx_s=out["execute_s"] - in_tx,
               batch_rows_max=max((h[1] for h in history), default=0),
               final_batch_size=store.sizer.size,
               first_batches=[(p, r, round(s, 4)) for p, r, s in history[:8]])
    return out


def scenario_rows(url: str, n: int, due: int, accounts: int, work: Path, repeat: int = 1) -> list[Row]:
    if due % accounts:
        raise ValueError("due rows must split evenly over the accounts")
    engine = sa.create_engine(url)
    cutoff = T0 + due * STEP
    layout = "1 account" if accounts == 1 else f"{accounts} accounts, interleaved"
    scenario = f"PostgreSQL delete, {due:,} of {n:,} rows past cutoff ({layout})"
    single = "single DELETE ... WHERE"
    per_account = f"{accounts} per-account DELETEs"
    target = f"engine >= 0.8 x single DELETE rows/s, every transaction <= {LOCK_LIMIT:.0f} s"
    keyset = f"keyset DELETE loop ({KEYSET_SPAN:,}-id ranges, no lookup, no ledger)"
    contenders = [single, "engine (execute_location)", "bare SqlStore loop", keyset] if accounts == 1 else \
        [single, per_account, "engine (execute_location)"]

    def measure(name: str) -> Row:
        log(f"{scenario}: {name}")
        seed(engine, n, accounts)
        extra: dict = {}
        if name == single:
            where = "created_at <= :c" if accounts > 1 else "account_id = :a AND created_at <= :c"
            seconds, deleted, longest = timed_statements(
                engine, [(f"DELETE FROM {TABLE} WHERE {where}", {"c": cutoff, "a": account_name(0)})])
            extra = {"deleted": deleted, "longest_tx_s": longest}
            row = Row(scenario, name, due, seconds)
        elif name == per_account:
            seconds, deleted, longest = timed_statements(
                engine, [(f"DELETE FROM {TABLE} WHERE account_id = :a AND created_at <= :c",
                          {"a": account_name(i), "c": cutoff}) for i in range(accounts)])
            extra = {"deleted": deleted, "longest_tx_s": longest}
            row = Row(scenario, name, due, seconds, reference=single)
        elif name == keyset:
            # The floor of any keyset-batched deletion: id ranges known without a query, one statement
            # each, nothing else. What the engine adds on top is its range lookups and ledger.
            spans = [(lo, lo + KEYSET_SPAN) for lo in range(0, due, KEYSET_SPAN)]  # due rows: ids 1..due
            seconds, deleted, longest = timed_statements(
                engine, [(f"DELETE FROM {TABLE} WHERE account_id = :a AND created_at <= :c AND id > :lo AND id <= :hi",
                          {"a": account_name(0), "c": cutoff, "lo": lo, "hi": hi}) for lo, hi in spans])
            extra = {"deleted": deleted, "longest_tx_s": longest, "statements": len(spans)}
            row = Row(scenario, name, due, seconds, reference=single)
        else:
            bare = name.startswith("bare")
            extra = engine_delete(engine, accounts, cutoff, work / "ledger-sql", bare=bare)
            row = Row(scenario, name, due, extra["execute_s"], reference=single, target=None if bare else target)
        left, left_due = remaining(engine, cutoff)
        row.left = left_due
        row.verified = left == n - due and left_due == 0
        row.verification = (f"{left:,} rows remain = all younger than the cutoff" if row.verified else
                            f"FAILED: {left:,} rows remain, {left_due:,} of them past the cutoff "
                            f"(expected {n - due:,} and 0)")
        row.extra.update({k: round(v, 4) if isinstance(v, float) else v for k, v in extra.items()})
        return row

    rows: list[Row] = []
    try:
        runs: dict[str, list[Row]] = {name: [] for name in contenders}
        for _ in range(repeat):  # round-robin, so drift of the machine spreads over all contenders
            for name in contenders:
                runs[name].append(measure(name))
        for name in contenders:
            row = combine(runs[name])
            if "longest_tx_s" in row.extra and len(runs[name]) > 1:
                row.extra["longest_tx_s_any_run"] = max(r.extra["longest_tx_s"] for r in runs[name])
            rows.append(row)
            if name == "engine (execute_location)":
                e = row.extra
                rows.append(Row(scenario, "engine incl. plan counts + verify", due,
                                e["plan_s"] + e["execute_s"] + e["store_verify_s"], reference=single,
                                verified=row.verified, verification=row.verification, left=row.left,
                                extra={"note": "median run's plan (one store.tally) + execute_location + "
                                               "store.verify", "plan_s": e["plan_s"],
                                       "store_verify_s": e["store_verify_s"]}))
    finally:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {TABLE}"))
        engine.dispose()
    return rows
