"""The sweep's steps as Airflow runs them: plain arguments in, JSON-able values out, one engine call each."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pendulum

from retention.engine.executor import execute_location
from retention.engine.planner import SweepContext, plan_sweep
from retention.engine.report import finish_sweep, location_summary
from retention.engine.verifier import verify_location
from retention.ledger import Ledger
from retention.rules import parse_utc
from retention.settings import Settings


class SweepFailed(RuntimeError):
    """The run ended with unfinished tasks or unexplained residue; the report says which."""


@contextmanager
def context() -> Iterator[SweepContext]:
    settings = Settings.from_env()
    with Ledger.open(settings.database_url) as ledger:
        yield SweepContext.load(settings, ledger)


def plan(*, at: str | None, dry_run: bool, actor: str, dag_id: str | None = None,
         airflow_run_id: str | None = None) -> dict:
    moment = parse_utc(at) if at else pendulum.now("UTC")
    with context() as ctx:
        made = plan_sweep(ctx, moment, dry_run=dry_run, actor=actor, dag_id=dag_id, airflow_run_id=airflow_run_id)
    return {"run_id": made.run_id, "dry_run": made.dry_run, "sql": made.locations["sql"], "s3": made.locations["s3"],
            "all": made.locations["sql"] + made.locations["s3"], "tasks": made.tasks, "estimated": made.estimated}


def execute(run_id: str, location_id: str, *, actor: str) -> dict:
    """Execute one location; returns its counts (Airflow shows them as the mapped task's XCom)."""
    with context() as ctx:
        affected = execute_location(ctx, run_id, location_id, actor=actor)
        return {"affected_by_this_try": affected, **location_summary(ctx.ledger, run_id, location_id)}


def verify(run_id: str, location_id: str, *, actor: str) -> dict:
    with context() as ctx:
        unexplained = verify_location(ctx, run_id, location_id, actor=actor)
        return {"tasks_with_residue": unexplained, **location_summary(ctx.ledger, run_id, location_id)}


def report(run_id: str, *, actor: str) -> dict:
    with context() as ctx:
        result = finish_sweep(ctx.ledger, run_id, actor=actor)
    summary = {k: v for k, v in result.as_dict().items() if k != "lines"}
    if result.status != "succeeded":
        raise SweepFailed(f"sweep {run_id} {result.status}: see `retention report {run_id}`")
    return summary
