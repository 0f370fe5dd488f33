"""One planned task runs once, even with two executors of it in two real processes on PostgreSQL (an Airflow
retry while `retention sweep --resume` runs): the second does not run what the first holds, a first that
lost its claim stops before its next batch, and the counts equal the rows really deleted. A SQL location's
delete tasks run as cohorts (many accounts per batch): the claim and the fencing token are the cohort's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from retention.engine.context import SweepContext
from retention.engine.planner import plan_sweep
from retention.ledger import Ledger, migrate
from retention.settings import Settings
from tests.conftest import _fresh_postgres_database

pytestmark = pytest.mark.postgres

LOCATION, TABLE, ACCOUNT = "page_views", "page_views", "acct_1001"
EXTRA = 60_000  # far beyond the first batch (5,000 rows), so the task takes several batches


@pytest.fixture
def pg_ledger(request: pytest.FixtureRequest, stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for url in _fresh_postgres_database(request):
        migrate(url)
        monkeypatch.setenv("RETENTION_DATABASE_URL", url)
        stack.env["RETENTION_DATABASE_URL"] = url
        yield url


def planned_run(stack) -> tuple[str, str, Counter]:
    """Many old page views of one account, then a sweep planned over them: (run id, task id, rows everywhere)."""
    engine = sa.create_engine(stack.app_url)
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO page_views (account_id, viewed_at, url) SELECT :account, "
            "now() - interval '20 years' - g * interval '1 second', '/pricing' FROM generate_series(1, :n) g"),
            {"account": ACCOUNT, "n": EXTRA})
    engine.dispose()
    settings = Settings.from_env()
    with Ledger.open(settings.database_url) as ledger:
        ctx = SweepContext.load(settings, ledger)
        options = {"acknowledged": (LOCATION,)} if "acknowledged" in plan_sweep.__code__.co_varnames else {}
        run_id = plan_sweep(ctx, stack.now, dry_run=False, actor="test", **options).run_id
        task = next(t for t in ledger.tasks(run_id, location=LOCATION) if t.account_id == ACCOUNT)
    assert task.status == "planned" and task.estimated_count >= EXTRA
    return run_id, task.id, stack.rows()


def first_executor_stopped_mid_task(stack, ledger: Ledger, run_id: str, task_id: str) -> subprocess.Popen:
    first = executor(stack, run_id)
    stop_after_first_batch(stack, first, ledger, task_id)
    return first


def executor(stack, run_id: str) -> subprocess.Popen:
    code = ("import sys; from retention.engine import tasks; "
            "print(tasks.execute(sys.argv[1], sys.argv[2], actor='airflow:test'))")
    return subprocess.Popen([sys.executable, "-c", code, run_id, LOCATION], env={**os.environ, **stack.env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stop_after_first_batch(stack, process: subprocess.Popen, ledger: Ledger, task_id: str) -> None:
    """SIGSTOP the executor once it has recorded a batch of the task, at a moment it holds a claim (mid-task:
    a batch outcome of another cohort at the location may come before the task's, and the executor may be
    between two cohorts, holding none) and has no transaction open, in the ledger (one would hold the chain
    head) or the application database (one would hold a batch's row locks): every other writer would wait on
    a frozen process."""
    app = sa.create_engine(stack.app_url)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and process.poll() is None:
            if any(e.task_id == task_id or e.payload.get("location") == LOCATION and e.payload.get("cohort")
                   for e in ledger.events_of_kind("batch.outcome")):
                os.kill(process.pid, signal.SIGSTOP)
                if holds_claim(ledger.engine) and not in_transaction(ledger.engine) and not in_transaction(app):
                    return
                os.kill(process.pid, signal.SIGCONT)
            time.sleep(0.005)
    finally:
        app.dispose()
    pytest.fail(f"the executor ended before it could be stopped mid-task: {process.communicate()}")


def in_transaction(engine: sa.Engine) -> bool:
    """Does another session have a transaction open (running a statement or waiting for its commit)?"""
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                    "AND pid <> pg_backend_pid() AND xact_start IS NOT NULL")).scalar_one() > 0


def holds_claim(engine: sa.Engine) -> bool:
    """Does some session hold a task's claim (a session advisory lock) in this ledger's database?"""
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND "
                                    "database = (SELECT oid FROM pg_database WHERE datname = current_database())")
                            ).scalar_one() > 0


def rows_left(stack) -> int:
    return stack.rows()[(TABLE, ACCOUNT)]


def assert_counts_are_the_rows_that_left(ledger: Ledger, run_id: str, before: Counter, after: Counter) -> None:
    """Every account's task at the location counts exactly its rows that left (re-counted), and every cohort
    batch's intent has its one outcome."""
    for task in ledger.tasks(run_id, location=LOCATION):
        assert task.affected_count == before[(TABLE, task.account_id)] - after[(TABLE, task.account_id)], task
    intents = Counter(e.payload.get("cohort") for e in ledger.run_events(run_id, "batch.intent")
                      if e.payload["location"] == LOCATION)
    outcomes = Counter(e.payload.get("cohort") for e in ledger.run_events(run_id, "batch.outcome", "batch.recovered")
                       if e.payload["location"] == LOCATION)
    assert intents == outcomes and sum(intents.values()) >= 2


def test_a_second_executor_does_not_run_a_task_the_first_holds(stack, pg_ledger) -> None:
    run_id, task_id, before = planned_run(stack)
    with Ledger.open(pg_ledger) as ledger:
        first = first_executor_stopped_mid_task(stack, ledger, run_id, task_id)
        try:
            second = executor(stack, run_id)
            _, err = second.communicate(timeout=300)
            assert second.returncode != 0 and "being executed by another process" in err, err
            # The tasks the first holds where it was stopped (the cohort of the big one, or on a loaded machine
            # the next the first had started). Read while it is stopped.
            held = err.rsplit("once it is done:", 1)[-1].strip().removesuffix("…").strip().split(", ")
            assert all(ledger.task(t).run_id == run_id and ledger.task(t).status != "done" for t in held), err
        finally:
            os.kill(first.pid, signal.SIGCONT)
        out, err = first.communicate(timeout=300)
        assert first.returncode == 0, err

        task = ledger.task(task_id)
        deleted = before[(TABLE, ACCOUNT)] - rows_left(stack)
        assert task.status == "done" and deleted >= EXTRA
        assert task.affected_count == deleted  # nothing lost to a second writer, nothing counted twice
        assert_counts_are_the_rows_that_left(ledger, run_id, before, stack.rows())
        assert ledger.verify().ok


def test_an_executor_that_lost_its_claim_stops_before_its_next_batch(stack, pg_ledger) -> None:
    run_id, task_id, before = planned_run(stack)
    with Ledger.open(pg_ledger) as ledger:
        first = first_executor_stopped_mid_task(stack, ledger, run_id, task_id)
        try:
            # The first executor's connection holding the claim is cut (a network partition, say) while it
            # is paused: the server drops its lock, and another executor takes the task over and finishes it.
            admin = sa.create_engine(pg_ledger)
            with admin.begin() as conn:
                cut = conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_locks "
                                           "WHERE locktype = 'advisory' AND granted")).scalars().all()
            admin.dispose()
            assert cut == [True]
            second = executor(stack, run_id)
            _, err = second.communicate(timeout=300)
            assert second.returncode == 0, err
            assert ledger.task(task_id).status == "done"
        finally:
            os.kill(first.pid, signal.SIGCONT)
        _, err = first.communicate(timeout=300)
        assert first.returncode != 0 and "ClaimLost" in err, err  # refused at its next write, before deleting

        task = ledger.task(task_id)
        deleted = before[(TABLE, ACCOUNT)] - rows_left(stack)
        assert deleted >= EXTRA and task.affected_count == deleted
        assert_counts_are_the_rows_that_left(ledger, run_id, before, stack.rows())
        assert ledger.verify().ok
