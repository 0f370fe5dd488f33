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


def ledger_state(ledger_path: Path) -> tuple[int, str, bool] | None:
    """How many batch intents the ledger holds, the kind of its last event, and whether that event is a
    cohort's (a SQL batch of many accounts, whose per-account counts are in a cohort checkpoint row)."""
    try:
        with sqlite3.connect(f"file:{ledger_path}?mode=ro", uri=True, timeout=1) as conn:
            return conn.execute("SELECT (SELECT count(*) FROM events WHERE kind = 'batch.intent'), kind,"
                                " json_extract(payload, '$.cohort') IS NOT NULL"
                                " FROM events ORDER BY seq DESC LIMIT 1").fetchone()
    except sqlite3.Error:  # not created yet, or locked by the writer
        return None


def freeze(process: subprocess.Popen) -> None:
    """SIGSTOP, then wait until the kernel reports the process stopped: the signal is asynchronous."""
    os.kill(process.pid, signal.SIGSTOP)
    stat = Path(f"/proc/{process.pid}/stat")
    while stat.read_text().rsplit(")", 1)[1].split()[0] not in ("T", "t"):
        time.sleep(0.0005)


def kill_between_intent_and_outcome(process: subprocess.Popen, ledger_path: Path, after_intents: int, *,
                                    cohort: bool = False) -> None:
    """Once the ledger holds `after_intents` batch intents, freeze the process at each poll; if its last
    event is then an intent (the batch is in flight), SIGKILL it there, else let it go on.

    Intents are counted in the ledger, not by watching the last event: a fast batch's intent and outcome
    can both land between two polls, and counting only what was seen last made the kill point drift past
    the end of the run on a quick machine."""
    state = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        state = ledger_state(ledger_path)
        if state and state[0] >= after_intents:
            freeze(process)
            frozen = ledger_state(ledger_path)  # read while nothing can write
            if frozen and frozen[1] == "batch.intent" and (frozen[2] or not cohort):
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
                return
            os.kill(process.pid, signal.SIGCONT)
        time.sleep(0.001)
    pytest.fail(f"the sweep finished or stalled before it could be killed (ledger state: {state})")


def totals(ledger_path: Path) -> tuple[str, Counter]:
    with Ledger.open(f"sqlite:///{ledger_path}") as ledger:
        run_id = ledger.last_run_id("sweep")
        return run_id, Counter({(t.location, t.account_id): t.affected_count for t in ledger.tasks(run_id)})


def contents(stack) -> tuple[Counter, dict]:
    objects = {(bucket, account): stack.objects(bucket, account)
               for bucket in ("call-recordings", "chat-attachments") for account in ACCOUNTS}
    return stack.rows(), objects


def intents(ledger_path: Path) -> int:
    state = ledger_state(ledger_path)
    assert state is not None
    return state[0]


# Where the kill lands: the first batch, the middle one, near the end; and the first SQL batch of many accounts.
@pytest.mark.parametrize(("share", "cohort"), [(0.0, False), (0.5, False), (0.9, False), (0.0, True)])
def test_killed_sweep_resumes_to_the_same_totals_and_contents(stack, tmp_path, share, cohort):
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
    kill_between_intent_and_outcome(process, crashed_ledger, max(1, int(intents(baseline_ledger) * share)),
                                    cohort=cohort)
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
