"""Peak memory of a whole sweep (plan, execute, verify, report) over many rows and objects.

The parent seeds one account's data: ``rows`` page views in PostgreSQL (65 % older than 1,000 days,
the rest from the last 100 days) and ``objects`` chat attachments under a dated key prefix (80 %
dated 2020, the rest from the last days). It then runs the sweep in a child process, exactly as the
CLI does (``plan_sweep``, ``execute_location``, ``verify_location``, ``finish_sweep``) with the
shipped rules (retention_rules/) for the demo account acct_1001 (active, EEA: visitor activity kept
13 months, chat transcripts 2 years), and takes the child's peak RSS from the kernel (``wait4``'s
ru_maxrss, cross-checked with the child's own VmHWM). Afterwards it counts what is left.

Run at two sizes, the numbers show whether memory grows with the data (it must not: the engine
streams).
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
from datetime import UTC, datetime, timedelta
from pathlib import Path

from common import REPO, MotoProcess, Row, log, s3_client, tail

TABLE = "bench_page_views"
BUCKET = "bench-chat-attachments"
ACCOUNT = "acct_1001"
TEMPLATE = "tenants/{account_id}/attachments/"
LIMIT_MB = 300
OLD_SHARE_ROWS = 0.65
OLD_SHARE_OBJECTS = 0.8
PER_DAY = 1000


def _inventory() -> dict:
    return {"locations": {
        "page_views": {"kind": "sql", "data_class": "visitor_activity", "conn_id": "app_db", "table": TABLE,
                       "account_column": "account_id", "timestamps": {"created_at": "viewed_at"}},
        "chat_attachments": {"kind": "s3", "data_class": "chat_transcripts", "conn_id": "object_store",
                             "bucket": BUCKET, "key_template": TEMPLATE,
                             "timestamp": {"key_segment": 3, "format": "%Y-%m-%d"}},
    }}


# -- seeding (parent) ------------------------------------------------------------------------------

def seed(pg_url: str, moto: MotoProcess, rows: int, objects: int) -> tuple[int, int]:
    """Returns (rows due, objects due)."""
    import sqlalchemy as sa

    old_rows = int(rows * OLD_SHARE_ROWS)
    engine = sa.create_engine(pg_url)
    now = datetime.now(UTC)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {TABLE}"))
        conn.execute(sa.text(f"CREATE TABLE {TABLE} (id bigint NOT NULL, account_id text NOT NULL, "
                             "viewed_at timestamptz, url text)"))
        # ids 1..old_rows: 3,000..1,000 days old; the rest: 100..0 days old (ids grow with time).
        conn.execute(sa.text(
            f"INSERT INTO {TABLE} SELECT g, :a, CASE WHEN g <= :old "
            "THEN :now - interval '3000 days' + (g::float8 / :old) * interval '2000 days' "
            "ELSE :now - interval '100 days' + ((g - :old)::float8 / (:n - :old)) * interval '99 days' END, "
            "'/pricing' FROM generate_series(1, :n) AS g"), {"a": ACCOUNT, "old": old_rows, "n": rows, "now": now})
        conn.execute(sa.text(f"ALTER TABLE {TABLE} ADD PRIMARY KEY (id)"))
        conn.execute(sa.text(f"CREATE INDEX {TABLE}_account_id ON {TABLE} (account_id)"))
        conn.execute(sa.text(f"VACUUM (ANALYZE) {TABLE}"))
    engine.dispose()

    old_objects = int(objects * OLD_SHARE_OBJECTS)
    prefix = TEMPLATE.format(account_id=ACCOUNT)
    today = now.date()
    keys = []
    for i in range(objects):  # 1,000 objects a day: old ones from 2020 on, young ones from yesterday back
        if i < old_objects:
            day = datetime(2020, 1, 1).date() + timedelta(days=i // PER_DAY)
        else:
            day = today - timedelta(days=1 + (i - old_objects) // PER_DAY)
        keys.append(f"{prefix}{day.isoformat()}/file-{i:06d}.bin")
    moto.reset()
    found, _ = moto.seed(BUCKET, prefix, keys)
    if found != objects:
        raise RuntimeError(f"seeding left {found} objects, expected {objects}")
    return old_rows, old_objects


def left_behind(pg_url: str, moto: MotoProcess) -> tuple[int, int]:
    import sqlalchemy as sa

    engine = sa.create_engine(pg_url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT count(*) FROM {TABLE}")).scalar_one()
    engine.dispose()
    client = s3_client(moto.endpoint)
    seen = []
    for _ in range(6):  # re-list until two listings agree
        prefix = TEMPLATE.format(account_id=ACCOUNT)
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        seen.append(sum(len(p.get("Contents", ())) for p in pages))
        if len(seen) >= 2 and seen[-1] == seen[-2]:
            break
    return rows, seen[-1]


# -- the sweep (child) -----------------------------------------------------------------------------

def _vm(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(pg_url: str, endpoint: str, ledger_path: str) -> None:
    import pendulum
    import sqlalchemy as sa

    from retention.embedded import s3_client as embedded_client
    from retention.engine import SweepContext, execute_location, finish_sweep, plan_sweep, verify_location
    from retention.ledger import Ledger
    from retention.rules import load_accounts, load_ruleset
    from retention.rules.inventory import S3Location, SystemsFile
    from retention.stores.s3 import S3Store
    from retention.stores.sql import SqlStore

    ruleset = load_ruleset(REPO / "retention_rules")
    accounts = load_accounts(REPO / "demo" / "accounts.yaml", set(ruleset.jurisdictions.jurisdictions))
    inventory = SystemsFile.model_validate(_inventory())
    engine = sa.create_engine(pg_url)
    client = embedded_client(endpoint)

    def open_store(location_id, spec):
        if isinstance(spec, S3Location):
            return S3Store(location_id, spec, client)
        return SqlStore(location_id, spec, engine)

    out: dict = {"rss_after_imports_mb": round(_vm("VmRSS"), 1)}
    with Ledger.open(f"sqlite:///{ledger_path}") as ledger:
        ctx = SweepContext(ruleset, inventory, {ACCOUNT: accounts[ACCOUNT]}, ledger, open_store=open_store)
        at = pendulum.now("UTC")
        started = time.perf_counter()
        # 65 % of the rows and 80 % of the objects are due: more than the mass-deletion share, so the run
        # acknowledges both locations, as an operator would after reading the dry run.
        plan = plan_sweep(ctx, at, dry_run=False, actor="bench", acknowledged=tuple(inventory.locations))
        out["plan_s"] = round(time.perf_counter() - started, 2)
        out["rss_after_plan_mb"] = round(_vm("VmRSS"), 1)
        started = time.perf_counter()
        locations = [loc for ids in plan.locations.values() for loc in ids]
        affected = {loc: execute_location(ctx, plan.run_id, loc, actor="bench") for loc in locations}
        out["execute_s"] = round(time.perf_counter() - started, 2)
        started = time.perf_counter()
        for loc in locations:
            verify_location(ctx, plan.run_id, loc, actor="bench")
        out["verify_s"] = round(time.perf_counter() - started, 2)
        report = finish_sweep(ledger, plan.run_id, actor="bench")
        out.update(status=report.status, affected=affected, planned_tasks=plan.tasks,
                   vm_hwm_mb=round(_vm("VmHWM"), 1))
    engine.dispose()
    print(json.dumps(out), flush=True)


# -- scenario (parent) -----------------------------------------------------------------------------

def scenario_rows(pg_url: str, moto: MotoProcess, work: Path, sizes: list[tuple[int, int]]) -> list[Row]:
    rows: list[Row] = []
    for n_rows, n_objects in sizes:
        scenario = f"Memory: sweep over {n_rows:,} rows + {n_objects:,} objects"
        log(f"{scenario}: seeding")
        due_rows, due_objects = seed(pg_url, moto, n_rows, n_objects)
        ledger = work / "ledger-memory.db"
        for p in work.glob("ledger-memory.db*"):  # the database, its journal and its task-claim lock directory
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        log(f"{scenario}: sweep in a child process")
        started = time.perf_counter()
        out_path, err_path = work / "memory-child.out", work / "memory-child.err"
        with out_path.open("w") as out, err_path.open("w") as err:
            proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--child", pg_url,
                                     moto.endpoint, str(ledger)], stdout=out, stderr=err, env=os.environ.copy())
            watchdog = threading.Timer(3600, proc.kill)  # bounded: a stuck sweep is killed
            watchdog.start()
            try:
                _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage: its peak RSS
            finally:
                watchdog.cancel()
            proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - started
        try:
            result = json.loads(out_path.read_text().strip().splitlines()[-1])
        except (ValueError, IndexError):
            result = {"error": tail(err_path.read_text(), 8), "exit_code": proc.returncode}
        left_rows, left_objects = left_behind(pg_url, moto)
        expect_rows, expect_objects = n_rows - due_rows, n_objects - due_objects
        # The child's own high-water mark (VmHWM, read by it at the end). wait4's ru_maxrss is kept as a
        # cross-check only: Linux folds the RSS the forked copy of this (parent) process had before exec
        # into it, so it can never read below the bench process's own size.
        peak = result.get("vm_hwm_mb")
        row = Row(scenario, "engine sweep (child process)", due_rows + due_objects, seconds,
                  target=f"peak RSS < {LIMIT_MB} MB")
        row.verified = ((left_rows, left_objects) == (expect_rows, expect_objects)
                        and result.get("status") == "succeeded")
        row.left = (left_rows - expect_rows) + (left_objects - expect_objects)
        row.verification = (f"{left_rows:,} rows and {left_objects:,} objects remain = all not yet due; run "
                            f"{result.get('status')}" if row.verified else
                            f"FAILED: {left_rows:,} rows / {left_objects:,} objects remain (expected {expect_rows:,} / "
                            f"{expect_objects:,}); run {result.get('status')}")
        row.target_met = peak is not None and peak < LIMIT_MB
        row.extra = {"peak_rss_mb": peak, "wait4_ru_maxrss_mb": round(usage.ru_maxrss / 1024, 1),
                     "due_rows": due_rows, "due_objects": due_objects, **result}
        rows.append(row)
    return rows


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        child(*sys.argv[2:])
    else:
        argparse.ArgumentParser(description="run through bench/run.py").print_help()
        sys.exit(2)
