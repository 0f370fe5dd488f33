"""A sweep at SaaS scale (``saas``, ``saas-growth``): thousands of accounts over the demo application's tables.

The data and its verification are ``saas_data``'s. Every run starts from a ``CREATE DATABASE ... TEMPLATE`` copy
of the seeded database, and both contenders act on exactly the rules' cutoffs:

- the engine, in a child process as the CLI runs it: ``SweepContext.load`` (the rules, the inventory, and the
  registry from ``retention_rules/registry.yaml``'s sql source: the ``accounts`` table through the ``app_db``
  Connection), ``plan_sweep`` over every location of the shipped inventory (the S3 locations' buckets exist,
  empty), ``execute_location`` and ``verify_location`` for each, ``finish_sweep``; a SQLite ledger file;
- what a DBA would run instead: per table one ``DELETE ... USING bench.cutoffs`` joined on the account (chat
  messages through their conversation first; ``app_users`` one ``UPDATE`` that clears and hashes the columns
  the inventory names), each statement its own transaction.

Transactions are timed on the client: SQLAlchemy's begin/commit/rollback events on the engine child's app
database engine, or around each DBA statement; "longest transaction" is wall time from BEGIN to COMMIT as the
client saw it. Peak RSS is the child's VmHWM; the ledger size is the SQLite file's bytes after the run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import REPO, MotoProcess, Row, log, tail
from saas_data import S3_BUCKETS, census, data_classes, dba_statements, due_rows, judge, seed_template, write_cutoffs

PEAK_RSS_LIMIT_MB = 300
PLAN_LIMIT_S = 120
SQL_RATIO = 0.8
ENGINE_TIMEOUT_S = 3600  # the engine child is killed after this (bench/run.py --saas-engine-timeout)


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
        print(json.dumps({**out, "phase": "planned"}), flush=True)  # what the parent keeps if the run is killed
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


def engine_run(url: str, moto: MotoProcess, work: Path, at: datetime, accounts: int,
               timeout: float) -> dict[str, Any]:
    ledger = work / "ledger-saas.db"
    for p in work.glob("ledger-saas.db*"):
        if p.is_dir():
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
        watchdog = threading.Timer(timeout, proc.kill)  # bounded: a sweep past the timeout is killed
        watchdog.start()
        try:
            code = proc.wait()
        finally:
            watchdog.cancel()
    wall = time.perf_counter() - started
    reports = [line for line in out_path.read_text().splitlines() if line.startswith("{")]
    result: dict[str, Any] = json.loads(reports[-1]) if reports else {}
    if code != 0:
        result["error"] = (f"killed after {timeout:.0f} s, phase {result.get('phase', 'loading')}" if code < 0
                           else tail(err_path.read_text(), 8))
        result["exit_code"] = code
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
             scenario: str, *, main: bool, timeout: float = ENGINE_TIMEOUT_S) -> list[Row]:
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
        result = engine_run(url, moto, work, now, accounts, timeout)
        after = census(url)
        ok, text, left = judge(before, after)
        ok = ok and result.get("status") == "succeeded"
        if result.get("status") != "succeeded":
            text += f"; run {result.get('status') or result.get('error')}"
        execute_s = float(result.get("execute_s", float("nan")))
        if "error" in result and "plan_s" in result:  # killed while executing: the rate it had reached
            done = due - sum(c["past_cutoff"] for c in after.values())
            execute_s = result["child_wall_s"] - result["plan_s"] - result.get("load_s", 0.0)
            result["done_before_kill"] = done
            text += f"; {done:,} of {due:,} due rows done in {execute_s:.0f} s ({done / execute_s:,.0f} rows/s)"
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


def scenario_rows(server_url: str, moto: MotoProcess, work: Path, accounts: int, rows: int, *,
                  timeout: float = ENGINE_TIMEOUT_S) -> list[Row]:
    return run_size(server_url, moto, work, accounts, rows,
                    f"SaaS: {accounts:,} accounts, {rows / 1e6:g}M rows, per-account cutoffs", main=True,
                    timeout=timeout)


def growth_rows(server_url: str, moto: MotoProcess, work: Path, sizes: list[int], rows: int, *,
                timeout: float = ENGINE_TIMEOUT_S) -> list[Row]:
    out: list[Row] = []
    for accounts in sizes:
        out += run_size(server_url, moto, work, accounts, rows,
                        f"Growth: {accounts:,} accounts, {rows / 1e6:g}M rows", main=False, timeout=timeout)
    return out


if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1] == "--child":
        child(*sys.argv[2:])
    else:
        argparse.ArgumentParser(description="run through bench/run.py").print_help()
        sys.exit(2)
