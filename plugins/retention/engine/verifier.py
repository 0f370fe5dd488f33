"""Re-query every location a run touched: residue 0, or the exception that explains what is left.

Per SQL location, one ``store.tally`` of the done tasks' selectors (per data class: one selector per account)
gives each account's residue in a constant number of statements; only the tasks with residue, and the held
ones, are looked at in detail with ``store.verify`` (children, retained records and why). Other stores verify
every task in detail (see ``verify_location``). The clean ones are
written ``verified`` in bulk, each detailed one gets a ``task.verified`` event, and the location one
``location.verified`` event with the counts.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from retention.engine.context import SweepContext
from retention.engine.executor import selector_of
from retention.engine.steplog import log_step, log_task
from retention.engine.steps import count_mode
from retention.ledger.chain import iso_utc
from retention.ledger.cohorts import Verified
from retention.ledger.models import PlannedTask
from retention.stores import Residue, Store
from retention.stores.base import CohortDeleting, Due
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
    done = [t for t in tasks if t.status == "done"]
    # SQL's tally counts exactly what its verify counts (the same predicate, and no child row without a parent
    # row); S3's verify also counts undated objects and re-lists until two listings agree, which one tally
    # pass does not, so elsewhere every task is verified in detail.
    residue_of = (_residues(ctx, store, [t for t in done if t.subject_request_id is None])
                  if isinstance(store, CohortDeleting) else {t.id: 1 for t in done})
    residue_of.update({t.id: 1 for t in done if t.subject_request_id is not None})  # a tally counts whole accounts
    clean = [t.id for t in tasks if t.status == "done" and not residue_of.get(t.id)]
    detailed = [_detail(ctx, store, task) for task in tasks if task.status == "held" or residue_of.get(task.id)]
    statuses = Counter({"verified": len(clean)}) + Counter(found.status for found in detailed)
    counts = {"tasks": len(tasks), "verified": statuses["verified"], "residue": statuses["residue"],
              "held": statuses["held"]}
    ctx.ledger.record_verification(run_id, clean, detailed, ("location.verified", {"location": location_id,
                                                                                    **counts}), actor=actor)
    log_step("location.verified", run_id=run_id, location=location_id, **counts)
    return statuses["residue"]


def _residues(ctx: SweepContext, store: Store, done: list[PlannedTask]) -> dict[str, int]:
    """Per done task, what its selector still matches: one tally per data class (an account has one task per
    data class at a location, and a tally takes one selector per account)."""
    by_class: dict[str, list[PlannedTask]] = defaultdict(list)
    for task in done:
        by_class[task.data_class].append(task)
    residue: dict[str, int] = {}
    for members in by_class.values():
        due = [Due(selector_of(t, ctx.ledger), **count_mode(t.action)) for t in members]
        tally = store.tally([t.account_id for t in members], due)
        residue.update({t.id: tally[t.account_id].due for t in members if t.account_id in tally})
    return residue


def _detail(ctx: SweepContext, store: Store, task: PlannedTask) -> Verified:
    residue = store.verify(selector_of(task, ctx.ledger), **count_mode(task.action))
    # A held task keeps its data on purpose; it is verified, but its residue is not a failure.
    status = task.status if task.status == "held" else ("verified" if residue.clean else "residue")
    log_task("task.verified", task, status=status, remaining=residue.remaining,
             retained=sum(r.count for r in residue.retained))
    return Verified(task.id, status, residue.remaining, _retained(residue), _payload(task, residue))


def _retained(residue: Residue) -> list[dict[str, Any]]:
    return [{"reason": r.reason, "count": r.count,
             "retain_until": iso_utc(r.retain_until) if r.retain_until else None} for r in residue.retained]


def _payload(task: PlannedTask, residue: Residue) -> dict[str, Any]:
    return {"location": task.location, "account_id": task.account_id, "data_class": task.data_class,
            "remaining": residue.remaining, "clean": residue.clean, "retained": _retained(residue)}
