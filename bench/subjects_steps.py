"""The subject-request bench's product through its steps (``bench/subjects.py --steps``), and the timing both product
contenders share: each request through ``requests.tasks`` as the subject_request DAG calls it, a context (ledger,
rules, inventory, the request's registry entry, stores) opened per step, in this one process."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import REPO, log
from subjects_data import Request

ACTOR = "bench"


def latency(seconds: list[float]) -> dict[str, float]:
    """p50, p95 and max of per-request wall times, in milliseconds."""
    ordered = sorted(seconds)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"p50_ms": round(statistics.median(ordered) * 1000, 1), "p95_ms": round(p95 * 1000, 1),
            "max_ms": round(ordered[-1] * 1000, 1)}


class Steps:
    """Wall time per step over every request."""

    def __init__(self) -> None:
        self.seconds: dict[str, list[float]] = {}

    def timed(self, name: str, call: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        try:
            return call()
        finally:
            self.seconds.setdefault(name, []).append(time.perf_counter() - started)

    def summary(self) -> dict[str, dict[str, float]]:
        return {name: {"total_s": round(sum(s), 2), **latency(s)} for name, s in self.seconds.items()}


class StatementsByDatabase:
    """SQL statements sent per database by every engine of this process (``Ledger.open`` makes one per step)."""

    def __init__(self) -> None:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        self.counts: dict[str, int] = {}
        self._engine_class = Engine
        event.listen(Engine, "after_cursor_execute", self._one)

    def _one(self, conn: Any, *_args: Any) -> None:
        name = str(conn.engine.url.database)
        self.counts[name] = self.counts.get(name, 0) + 1

    def close(self) -> None:
        from sqlalchemy import event

        event.remove(self._engine_class, "after_cursor_execute", self._one)


def tasks_run(app_url: str, ledger_url: str, endpoint: str, work: Path, requests: list[Request]) -> dict[str, Any]:
    """The product through the steps themselves, as the subject_request DAG calls them (``requests.tasks``; execute
    and verify per location): each step opens the ledger and loads the rules, the inventory, the account registry
    (registry.yaml's SQL source: the application's accounts table) and its stores, as an Airflow task does. Not
    measured: Airflow's scheduling and the task process's start between steps (stores' engines stay cached in
    this one process, where each Airflow task would connect anew)."""
    import os

    import sqlalchemy as sa

    from retention import embedded
    from retention.ledger.database import migrate
    from retention.requests import tasks

    migrate(ledger_url)
    env = {"RETENTION_RULES_DIR": str(REPO / "retention_rules"), "RETENTION_HOME": str(work / "home-tasks"),
           "RETENTION_DATABASE_URL": ledger_url, **embedded.airflow_connections(app_url, endpoint)}
    saved = {name: os.environ.get(name) for name in [*env, "RETENTION_ACCOUNTS_FILE", "RETENTION_REGISTRY_FILE"]}
    os.environ.update(env)
    for name in ("RETENTION_ACCOUNTS_FILE", "RETENTION_REGISTRY_FILE"):
        os.environ.pop(name, None)
    steps = Steps()
    per_request: list[float] = []
    statuses: dict[str, int] = {}
    approvals_needed = 0
    today = datetime.now(UTC).date().isoformat()
    app_db, ledger_db = sa.engine.make_url(app_url).database, sa.engine.make_url(ledger_url).database
    statements = StatementsByDatabase()
    try:
        started_all = time.perf_counter()
        for request in requests:
            started = time.perf_counter()
            params = {"account_id": request.account_id, "request_type": "erasure",
                      "identifiers": {"email": [request.email]}, "reference": f"DSR-{request.index + 1}",
                      "received_on": today}
            opened = steps.timed("file", lambda params=params: tasks.open_request(params, filed_by=ACTOR,
                                                                                  actor=ACTOR))
            rid = opened["request_id"]
            steps.timed("expand", lambda rid=rid: tasks.expand(rid, actor=ACTOR))
            preview = steps.timed("preview", lambda rid=rid: tasks.preview(rid, actor=ACTOR, subprocessors=[]))
            if steps.timed("approve", lambda rid=rid: tasks.approve_if_small(rid, actor=ACTOR)):
                approvals_needed += 1
                per_request.append(time.perf_counter() - started)
                continue
            for location in preview["all"]:
                steps.timed("execute", lambda loc=location, p=preview: _execute_step(p, loc))
            for location in preview["all"]:
                steps.timed("verify", lambda loc=location, p=preview: _verify_step(p, loc))
            closed = steps.timed("close", lambda rid=rid: tasks.close(rid, actor=ACTOR))
            statuses[closed["status"]] = statuses.get(closed["status"], 0) + 1
            per_request.append(time.perf_counter() - started)
            if (request.index + 1) % 20 == 0:
                log(f"steps: {request.index + 1:,} requests in {time.perf_counter() - started_all:.1f} s")
        total = time.perf_counter() - started_all
    finally:
        statements.close()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    counted = {"app_db_per_request": round(statements.counts.get(str(app_db), 0) / len(requests), 1),
               "ledger_per_request": round(statements.counts.get(str(ledger_db), 0) / len(requests), 1)}
    return {"seconds": total, "latency": latency(per_request), "steps": steps.summary(), "statuses": statuses,
            "approvals_needed": approvals_needed, "statements": counted}


def _execute_step(previewed: dict[str, Any], location: str) -> Any:
    """The DAG's execute task for one location of a request."""
    from retention.engine import tasks

    return tasks.execute(previewed["run_id"], location, account_id=previewed["account_id"], actor=ACTOR)


def _verify_step(previewed: dict[str, Any], location: str) -> Any:
    """The DAG's verify task for one location of a request."""
    from retention.engine import tasks

    return tasks.verify(previewed["run_id"], location, account_id=previewed["account_id"], actor=ACTOR)
