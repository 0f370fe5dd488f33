"""Re-query every location a run touched: residue 0, or the exception that explains what is left."""

from __future__ import annotations

from typing import Any

from retention.engine.context import SweepContext
from retention.engine.executor import selector_of
from retention.engine.steplog import log_task
from retention.engine.steps import count_mode
from retention.ledger.chain import iso_utc
from retention.ledger.models import PlannedTask
from retention.stores import Residue
from retention.stores.vacuum import vacuum_run


def reclaim(ctx: SweepContext, run_id: str, *, actor: str) -> list[dict[str, Any]]:
    """After verification: a SQL DELETE leaves the rows' bytes as dead tuples until VACUUM, so VACUUM the tables
    the run's verified tasks deleted from and record it (``storage.vacuumed``), once per run."""
    if ctx.ledger.run_events(run_id, "storage.vacuumed", "storage.vacuum_failed"):  # a retried task
        return []
    return vacuum_run(ctx.ledger, ctx.inventory, run_id, actor=actor)


def verify_location(ctx: SweepContext, run_id: str, location_id: str, *, actor: str) -> int:
    """Verify the finished (and held) tasks of one location; returns how many have unexplained residue."""
    tasks = ctx.ledger.tasks(run_id, location=location_id, statuses=("done", "held"))
    if not tasks:
        return 0
    store = ctx.store(location_id)
    unexplained = 0
    for task in tasks:
        residue = store.verify(selector_of(task), **count_mode(task.action))
        # A held task keeps its data on purpose; it is verified, but its residue is not a failure.
        status = task.status if task.status == "held" else ("verified" if residue.clean else "residue")
        unexplained += status == "residue"
        ctx.ledger.update_task(task.id, ("task.verified", _payload(task, residue)), status=status,
                               residue=residue.remaining, retained=_retained(residue), actor=actor)
        log_task("task.verified", task, status=status, remaining=residue.remaining,
                  retained=sum(r.count for r in residue.retained))
    return unexplained


def _retained(residue: Residue) -> list[dict[str, Any]]:
    return [{"reason": r.reason, "count": r.count,
             "retain_until": iso_utc(r.retain_until) if r.retain_until else None} for r in residue.retained]


def _payload(task: PlannedTask, residue: Residue) -> dict[str, Any]:
    return {"location": task.location, "account_id": task.account_id, "data_class": task.data_class,
            "remaining": residue.remaining, "clean": residue.clean, "retained": _retained(residue)}
