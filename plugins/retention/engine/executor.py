"""Execute a plan, batch by batch: intent event, destructive call, outcome event, checkpoint.

Deletions at a store that deletes for many accounts at once (``CohortDeleting``: SQL) run as cohorts
(``engine.cohorts``): the tasks with the same action, anchor and data class, each account with its own
cutoff, deleted together in key ranges. Everything else (anonymize, isolate, S3, Redis) runs task by task
below; the protocol is the same in both.

Killed at any point, a rerun resumes from the checkpoint. A batch whose intent has no outcome was
interrupted mid-flight: the store says how much of its key range is still there, the difference is
recorded as deleted (once), and the rest is deleted by the next batches. Totals therefore equal
those of an uninterrupted run.

One executor at a time: each task is claimed (``Ledger.claim``) and every write carries the claim's
fencing token, so a second executor of the same task (an Airflow retry while ``--resume`` runs) does
not run it, and one that lost its claim stops before its next batch. Counts are added by the ledger's
database, never overwritten.

Legal holds are read right before every batch from the ledger's own rows: any hold not released stops
the task, whatever its ``placed_at`` and whatever this machine's clock says.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any

from retention.engine.cohorts import RUNNABLE, cohort_id, cohorts_of, execute_cohort
from retention.engine.context import SweepContext
from retention.engine.shards import Shard
from retention.engine.steplog import log_task
from retention.engine.steps import count_mode
from retention.ledger import Ledger
from retention.ledger.models import PlannedTask, Run
from retention.ledger.runs import TaskBusy
from retention.stores import Outcome, PendingBatch, Selector, Store
from retention.stores.base import BatchLocked, CohortDeleting

# Run kinds that delete nothing before their approval event (a second person's, or a small request's own).
APPROVAL = {"offboarding": "offboarding.approved", "subject_request": "subject.approved"}


class NotPermitted(PermissionError):
    """The run may not delete: it is closed (finished, rejected) or still waits for its approval."""


class HeldMidBatch(Exception):
    """A legal hold came into force while a batch was being tried again; the store rolled it back."""

    def __init__(self, holds: list[str]) -> None:
        super().__init__(", ".join(holds))
        self.holds = holds


def selector_of(task: PlannedTask, ledger: Ledger) -> Selector:
    """What the task acts on. A data subject request's task selects only the person's records: its identifiers
    (as expanded) are read from the request, and once they are erased the task can no longer run at all, rather
    than fall back to the whole account."""
    if task.subject_request_id is not None:
        return Selector(task.account_id, subject=ledger.request_subject(task.subject_request_id))
    return Selector(task.account_id, task.anchor, task.cutoff)


def execute_location(ctx: SweepContext, run_id: str, location_id: str, *, actor: str,
                     shard: Shard | None = None) -> int:
    """Run every unfinished task of one location (with ``shard``, only the tasks of the accounts it takes);
    returns the records affected by this call."""
    run = ctx.ledger.get_run(run_id)
    if run is None:
        raise LookupError(f"no run {run_id!r}")
    if run.dry_run:
        return 0
    check_may_delete(ctx.ledger, run)
    tasks = [t for t in ctx.ledger.tasks(run_id, location=location_id, statuses=RUNNABLE)
             if shard is None or shard.takes(t.account_id)]
    if not tasks:
        return 0
    store = ctx.store(location_id)
    affected, busy = 0, []
    single = tasks
    if isinstance(store, CohortDeleting):  # a subject request's tasks select by person: never in an account cohort
        by_cohort = cohorts_of([t for t in tasks if t.action == "delete" and t.subject_request_id is None])
        single = [t for t in tasks if t.action != "delete" or t.subject_request_id is not None]
        for key, members in by_cohort.items():
            if len(members) == 1 and ctx.ledger.cohort_state(cohort_id(run_id, location_id, shard, key)) is None:
                # One account (an offboarding's, say), never begun as a cohort: the per-task path, whose store looks
                # up the next range while a batch deletes. A cohort begun keeps its own checkpoint to the end.
                single += members
                continue
            try:
                affected += execute_cohort(ctx.ledger, store, run_id, location_id, key, members, actor=actor,
                                           shard=shard, check_run=lambda: check_may_delete(
                                               ctx.ledger, ctx.ledger.get_run(run_id)))
            except TaskBusy:
                busy += [t.id for t in members]  # the other executor finishes them; the rest goes on here
    for task in single:
        try:
            affected += claim_and_execute(ctx.ledger, store, task.id, actor=actor)
        except TaskBusy:
            busy.append(task.id)  # the other executor finishes it; the rest of the location goes on here
    if busy:
        raise TaskBusy(f"{len(busy)} task(s) of {location_id} in run {run_id} are being executed by another "
                       f"process; run this again once it is done: {', '.join(busy[:20])}"
                       f"{' …' if len(busy) > 20 else ''}")
    return affected


def claim_and_execute(ledger: Ledger, store: Store, task_id: str, *, actor: str) -> int:
    """Claim the task, then run it from the state the ledger holds now (a previous holder may have moved it
    on or finished it since the task list was read)."""
    with ledger.claim(task_id) as fence:
        task = ledger.task(task_id)
        if task.status not in RUNNABLE:
            return 0
        return execute_task(ledger, store, task, actor=actor, fence=fence)


def check_may_delete(ledger: Ledger, run: Run | None) -> None:
    """Refuse a closed run, and an offboarding no second person approved, whatever Airflow's task states say
    (a cleared or hand-marked task must not get past a rejection)."""
    if run is None:
        raise LookupError("the task's run is not in the ledger")
    if run.status != "running":
        raise NotPermitted(f"run {run.id} is {run.status}: nothing more is deleted in it")
    approval = APPROVAL.get(run.kind)
    if approval and not ledger.run_events(run.id, approval):
        raise NotPermitted(f"{run.kind} run {run.id} has no {approval} event: nothing is deleted before approval")


def execute_task(ledger: Ledger, store: Store, task: PlannedTask, *, actor: str, fence: int) -> int:
    """Run one claimed task (``fence``: its claim's token); returns the records affected by this call."""
    selector = selector_of(task, ledger)
    checkpoint = dict(task.checkpoint or {})
    affected = 0
    if checkpoint.get("pending"):
        checkpoint, affected = _recover(ledger, store, task, selector, checkpoint, actor, fence)
    for batch in store.batches(selector, after=checkpoint.get("after"), **count_mode(task.action)):
        # Right before each batch: the run may have been closed meanwhile (a report finished it while this
        # process, a --resume, still ran), and a hold may have been placed.
        check_may_delete(ledger, ledger.get_run(task.run_id))
        holds = ledger.holds_in_force(task.account_id, task.data_class)
        if holds:
            return _held(ledger, task, holds, affected, checkpoint, actor=actor, fence=fence)
        ledger.update_task(task.id, ("batch.intent", {**_ids(task), **_batch_fields(batch)}), status="running",
                           checkpoint={**checkpoint, "pending": _pending(batch)}, actor=actor, fence=fence)
        try:
            outcome = _apply(store, task.action, replace(batch, recheck=lambda: _stop_if_held(ledger, task)))
        except HeldMidBatch as held:  # rolled back: nothing of the batch went, its range stays to do
            return _held(ledger, task, held.holds, affected, checkpoint, actor=actor, fence=fence)
        except BatchLocked as locked:  # every try rolled back: say so, then let the run fail and be retried
            ledger.update_task(task.id, ("batch.locked", {**_ids(task), "lock_retries": locked.retries}),
                               checkpoint=checkpoint, actor=actor, fence=fence)
            raise
        affected += outcome.affected
        checkpoint = {"after": batch.upper}
        counts = {"affected": outcome.affected, "retained": sum(r.count for r in outcome.retained)}
        if outcome.lock_retries:  # the batch met an application lock and was rolled back and tried again
            counts["lock_retries"] = outcome.lock_retries
        ledger.update_task(task.id, ("batch.outcome", {**_ids(task), **counts}),
                           checkpoint=checkpoint, add_affected=outcome.affected, actor=actor, fence=fence)
        log_task("batch.outcome", task, **counts)
    total = task.affected_count + affected
    # A finished task needs no cursor, and an object key in it could carry personal data.
    ledger.update_task(task.id, ("task.done", {**_ids(task), "affected": total}), status="done",
                       checkpoint=None, actor=actor, fence=fence)
    log_task("task.done", task, affected=total)
    return affected


def _held(ledger: Ledger, task: PlannedTask, holds: list[str], affected: int, checkpoint: dict[str, Any], *, actor: str,
          fence: int) -> int:
    ledger.update_task(task.id, ("task.held", {**_ids(task), "holds": holds}), status="held", checkpoint=checkpoint,
                       actor=actor, fence=fence)
    log_task("task.held", task, affected=affected)
    return affected


def _stop_if_held(ledger: Ledger, task: PlannedTask) -> None:
    holds = ledger.holds_in_force(task.account_id, task.data_class)
    if holds:
        raise HeldMidBatch(holds)


def _apply(store: Store, action: str, batch: PendingBatch) -> Outcome:
    return {"anonymize": store.anonymize, "isolate": store.isolate}.get(action, store.delete)(batch)


def _recover(ledger: Ledger, store: Store, task: PlannedTask, selector: Selector, checkpoint: dict[str, Any],
             actor: str, fence: int) -> tuple[dict[str, Any], int]:
    pending = checkpoint["pending"]
    remaining = _remaining(store, task, selector, pending)
    gone = max(0, pending["count"] - remaining)
    checkpoint = {"after": pending["after"]}  # the unfinished range is listed again; only what is left
    ledger.update_task(task.id, ("batch.recovered", {**_ids(task), "affected": gone, "remaining": remaining}),
                       checkpoint=checkpoint, add_affected=gone, actor=actor, fence=fence)
    log_task("batch.recovered", task, affected=gone, remaining=remaining)
    return checkpoint, gone


def _remaining(store: Store, task: PlannedTask, selector: Selector, pending: dict[str, Any]) -> int:
    return store.count(selector, pending["after"], pending["upper"], **count_mode(task.action))



def _ids(task: PlannedTask) -> dict[str, Any]:
    return {"location": task.location, "account_id": task.account_id, "data_class": task.data_class,
            "action": task.action}


def _pending(batch: PendingBatch) -> dict[str, Any]:
    return {"after": batch.after, "upper": batch.upper, "count": batch.count}


def _batch_fields(batch: PendingBatch) -> dict[str, Any]:
    # Cursors may be object keys, which can carry personal data: the chain gets their digests only.
    return {"count": batch.count, "after_sha256": _sha(batch.after), "upper_sha256": _sha(batch.upper)}


def _sha(value: str | None) -> str | None:
    return hashlib.sha256(value.encode()).hexdigest() if value is not None else None
