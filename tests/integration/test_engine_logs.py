"""Every engine step logs one logfmt line of ids and counts; nothing a record holds reaches any log line."""

from __future__ import annotations

import logging
import re

import airflow  # noqa: F401  configures logging on import: before caplog attaches its handler, not during the test

from retention.engine import SweepContext, sweep
from retention.engine.steplog import logfmt
from retention.ledger import Ledger
from retention.settings import Settings

PAIR = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')
PERSONAL = ("@example.invalid", "192.0.2.", "Synthetic User", "/pricing", "attachments/", "file-")


def parse(line: str) -> dict[str, str]:
    pairs = PAIR.findall(line)
    assert " ".join(f"{k}={v}" for k, v in pairs) == line, f"not logfmt: {line}"
    return dict(pairs)


def test_a_sweep_logs_each_step_as_logfmt_and_no_record_contents(stack, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="retention")
    with Ledger.open(stack.ledger_url) as ledger:
        report = sweep(SweepContext.load(Settings.from_env(), ledger), stack.now, dry_run=False, actor="test")
        events = [e.kind for e in ledger.run_events(report.run_id)]

    lines = [parse(r.getMessage()) for r in caplog.records if r.name == "retention.engine"]
    steps = [line["step"] for line in lines]
    assert steps[0] == "run.planned" and steps[-1] == "run.finished"
    # one line per task event the ledger recorded, in the same order
    assert [s for s in steps if s.startswith(("batch.", "task.", "cohort."))] == [
        e for e in events if e in ("batch.outcome", "task.done", "task.held", "task.verified", "batch.recovered",
                                   "cohort.done")]
    finished = lines[-1]
    assert (finished["run_id"], finished["status"], int(finished["deleted"])) == (
        report.run_id, report.status, report.deleted)
    # A task done alone logs task.done (its account); SQL deletions finish many accounts at once (cohort.done)
    done = [line for line in lines if line["step"] in ("task.done", "cohort.done")]
    assert sum(int(line["affected"]) for line in done) == report.deleted + report.anonymized
    assert all({"run_id", "location", "data_class"} <= line.keys() for line in done)
    assert all({"task_id", "account_id"} <= line.keys() for line in done if line["step"] == "task.done")
    assert [line["step"] for line in lines].count("location.verified") == len(
        [e for e in events if e == "location.verified"])

    everything = caplog.text + "".join(r.getMessage() for r in caplog.records)
    assert not [marker for marker in PERSONAL if marker in everything]


def test_a_value_that_is_not_a_plain_token_is_quoted_and_cannot_forge_a_field() -> None:
    line = logfmt(step="task.done", location='sql" affected=999', count=3, dry_run=False, rule=None)
    assert parse(line) == {"step": "task.done", "location": '"sql\\" affected=999"', "count": "3",
                           "dry_run": "false", "rule": "null"}
