"""The sweep's steps as Airflow runs them: plain arguments in, JSON-able values out, one engine call each."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pendulum

from retention.engine.context import SweepContext
from retention.engine.executor import execute_location
from retention.engine.overdue import describe, record_check
from retention.engine.planner import plan_sweep
from retention.engine.report import finish_sweep, location_summary
from retention.engine.shards import Shard, ShardDict, plan_shards
from retention.engine.verifier import reclaim, verify_location
from retention.ledger import Ledger
from retention.rules import parse_utc
from retention.settings import Settings


class SweepFailed(RuntimeError):
    """The run ended with unfinished tasks, unexplained residue or a refused mass deletion; the report says which."""


class TerminationsOverdue(RuntimeError):
    """A terminated account's offboarding has not started by its due date: on-call must start it."""


@contextmanager
def context(account_id: str | None = None) -> Iterator[SweepContext]:
    """The ledger, the rules, the inventory and the whole account registry (with ``account_id``: that account's
    entry only, as a data subject request's steps read it)."""
    settings = Settings.from_env()
    with Ledger.open(settings.database_url) as ledger:
        yield SweepContext.load(settings, ledger, account_id=account_id)


def plan(*, at: str | None, dry_run: bool, actor: str, dag_id: str | None = None,
         airflow_run_id: str | None = None, acknowledge_mass_deletion: list[str] | None = None) -> dict[str, Any]:
    """Plan the sweep: its run id, the locations with work per store kind (``sql``, ``s3``, ...) and ``all``, and
    ``shards``: per location with work, the shards its execute is mapped over (one per RETENTION_SHARD_RECORDS
    records planned due, up to its kind's pool slots). A location the plan would make a large share of due at once
    is planned as kept unless ``acknowledge_mass_deletion`` names it; the returned plan says which (counts and a
    sentence each). Ids and counts only: the XCom stays small whatever the number of accounts."""
    moment = parse_utc(at) if at else pendulum.now("UTC")
    with context() as ctx:
        made = plan_sweep(ctx, moment, dry_run=dry_run, actor=actor, dag_id=dag_id, airflow_run_id=airflow_run_id,
                          acknowledged=acknowledge_mass_deletion or ())
        share = ctx.mass_deletion.share
        records = Settings.from_env().shard_records
        shards: dict[str, list[ShardDict]] = {
            location: [s.as_dict() for s in split]
            for location, split in plan_shards(ctx.inventory.locations, made.due_by_location, records).items()}
    every = [location for ids in made.locations.values() for location in ids]
    return {"run_id": made.run_id, "dry_run": made.dry_run, **made.locations, "all": every, "shards": shards,
            "tasks": made.tasks,
            "estimated": made.estimated,
            "mass_deletion": [{**m.as_dict(), "sentence": m.outcome(share, made.dry_run)} for m in made.mass_deletions]}


def execute(run_id: str, location_id: str, *, actor: str, shard: ShardDict | None = None,
            account_id: str | None = None) -> dict[str, Any]:
    """Execute one location (with ``shard``, as ``plan`` returned it: only the accounts it takes); returns its
    counts (Airflow shows them as the mapped task's XCom). ``account_id``: the one account a data subject request's
    run acts on, whose registry entry alone is read."""
    with context(account_id) as ctx:
        affected = execute_location(ctx, run_id, location_id, actor=actor,
                                    shard=None if shard is None else Shard.of(shard))
        return {"affected_by_this_try": affected, **location_summary(ctx.ledger, run_id, location_id)}


def verify(run_id: str, location_id: str, *, actor: str, account_id: str | None = None) -> dict[str, Any]:
    """Verify one location by re-query (``account_id`` as for ``execute``)."""
    with context(account_id) as ctx:
        unexplained = verify_location(ctx, run_id, location_id, actor=actor)
        return {"tasks_with_residue": unexplained, **location_summary(ctx.ledger, run_id, location_id)}


def report(run_id: str, *, actor: str) -> dict[str, Any]:
    with context() as ctx:
        reclaim(ctx, run_id, actor=actor)
        result = finish_sweep(ctx.ledger, run_id, actor=actor)
    summary = {k: v for k, v in result.as_dict().items() if k != "lines"}
    if result.status != "succeeded":
        refused = "".join(f"; mass deletion at {result.mass_deletion_text(m)} (trigger again with "
                          f"acknowledge_mass_deletion naming {m['location']} if the change is meant)"
                          for m in result.refused)
        raise SweepFailed(f"sweep {run_id} {result.status}{refused}: see `retention report {run_id}`")
    return summary


def check_terminations(run_id: str, *, actor: str) -> dict[str, Any]:
    """After the sweep: fail while any termination's offboarding is overdue (the sweep does not delete a
    terminated account, its offboarding does). Checked as of the sweep's own moment; recorded in the ledger."""
    with context() as ctx:
        run = ctx.ledger.get_run(run_id)
        if run is None:
            raise LookupError(f"no run {run_id!r} in the ledger")
        overdue = record_check(ctx, run_id, pendulum.instance(run.as_of), actor=actor)
    if overdue:
        raise TerminationsOverdue(describe(overdue))
    return {"overdue": []}
