"""Kill the sweep (a real SIGKILL of the CLI process) in the middle of its batch loop, resume it, and
end with the same ledger totals and the same store contents as an uninterrupted run."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from retention import embedded
from retention.ledger import Ledger
from tests.fixtures.stack import ACCOUNTS

PER_AGE = 10  # about fifty batches: the kill lands mid-run


def reseed(stack) -> None:
    urllib.request.urlopen(urllib.request.Request(f"{stack.endpoint}/moto-api/reset", method="POST")).close()
    embedded.seed(stack.app_url, embedded.s3_client(stack.endpoint), ACCOUNTS, stack.now, per_age=PER_AGE)


def sweep_process(stack, ledger_path: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, **stack.env, "RETENTION_DATABASE_URL": f"sqlite:///{ledger_path}"}
    return subprocess.Popen([sys.executable, "-m", "retention.cli", "sweep", "--at", stack.now.isoformat(), *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def last_event(ledger_path: Path) -> tuple[int, str] | None:
    try:
        with sqlite3.connect(f"file:{ledger_path}?mode=ro", uri=True, timeout=1) as conn:
            return conn.execute("SELECT seq, kind FROM events ORDER BY seq DESC LIMIT 1").fetchone()
    except sqlite3.Error:  # not created yet
        return None


def kill_between_intent_and_outcome(process: subprocess.Popen, ledger_path: Path, after_intents: int) -> None:
    """Freeze the process when its last event is a batch intent; if it still is, SIGKILL it there."""
    intents, seen = 0, 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        event = last_event(ledger_path)
        if event and event[1] == "batch.intent" and event[0] != seen:
            seen, intents = event[0], intents + 1
            if intents >= after_intents:
                os.kill(process.pid, signal.SIGSTOP)
                if last_event(ledger_path) == event:
                    os.kill(process.pid, signal.SIGKILL)
                    process.wait()
                    return
                os.kill(process.pid, signal.SIGCONT)
        time.sleep(0.001)
    pytest.fail(f"the sweep finished or stalled before it could be killed (intents seen: {intents})")


def totals(ledger_path: Path) -> tuple[str, Counter]:
    with Ledger.open(f"sqlite:///{ledger_path}") as ledger:
        run_id = ledger.last_run_id("sweep")
        return run_id, Counter({(t.location, t.account_id): t.affected_count for t in ledger.tasks(run_id)})


def contents(stack) -> tuple[Counter, dict]:
    objects = {(bucket, account): stack.objects(bucket, account)
               for bucket in ("call-recordings", "chat-attachments") for account in ACCOUNTS}
    return stack.rows(), objects


@pytest.mark.parametrize("after_intents", [1, 7, 23])
def test_killed_sweep_resumes_to_the_same_totals_and_contents(stack, tmp_path, after_intents):
    reseed(stack)
    baseline_ledger = tmp_path / "baseline.db"
    done = sweep_process(stack, baseline_ledger)
    assert done.wait(timeout=300) == 0, done.stderr.read()
    _, expected_totals = totals(baseline_ledger)
    expected_contents = contents(stack)
    assert sum(expected_totals.values()) > 0

    reseed(stack)
    crashed_ledger = tmp_path / "crashed.db"
    process = sweep_process(stack, crashed_ledger)
    kill_between_intent_and_outcome(process, crashed_ledger, after_intents)
    assert process.returncode == -signal.SIGKILL
    run_id, partial = totals(crashed_ledger)
    assert sum(partial.values()) < sum(expected_totals.values())

    resumed = sweep_process(stack, crashed_ledger, "--resume", run_id)
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    assert totals(crashed_ledger) == (run_id, expected_totals)
    assert contents(stack) == expected_contents
    with Ledger.open(f"sqlite:///{crashed_ledger}") as ledger:
        assert ledger.verify().ok
        kinds = Counter(e.kind for e in ledger.events())
    assert kinds["batch.recovered"] == 1  # the batch killed in flight was reconciled, once
