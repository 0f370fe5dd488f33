"""Execute a plan, batch by batch: intent event, destructive call, outcome event, checkpoint.

Killed at any point, a rerun resumes from the checkpoint. A batch whose intent has no outcome was
interrupted mid-flight: the store says how much of its key range is still there, the difference is
recorded as deleted (once), and the rest is deleted by the next batches. Totals therefore equal
those of an uninterrupted run.
"""

from __future__ import annotations

import hashlib

import pendulum

from retention.engine.planner import SweepContext
from retention.engine.steplog import log_task
from retention.engine.steps import count_mode
from retention.ledger import Ledger
from retention.ledger.models import PlannedTask
from retention.stores import PendingBatch, Selector, Store

RUNNABLE = ("planned", "running")
APPROVAL = {"offboarding": "offboarding.approved"}  # run kinds that delete nothing before a second person approves


class NotPermitted(PermissionError):
    """The run may not delete: it is closed (finished, rejected) or still waits for its approval."""


def selector_of(task: PlannedTask) -> Selector:
    return Selector(task.account_id, task.anchor, task.cutoff)


def execute_location(ctx: SweepContext, run_id: str, location_id: str, *, actor: str) -> int:
    """Run every unfinished task of one location; returns the records affected by this call."""
    run = ctx.ledger.get_run(run_id)
    if run is None:
        raise LookupError(f"no run {run_id!r}")
    if run.dry_run:
        return 0
    check_may_delete(ctx.ledger, run)
    tasks = ctx.ledger.tasks(run_id, location=location_id, statuses=RUNNABLE)
    if not tasks:
        return 0
    store = ctx.store(location_id)
    return sum(execute_task(ctx.ledger, store, task, actor=actor) for task in tasks)


def check_may_delete(ledger: Ledger, run) -> None:
    """Refuse a closed run, and an offboarding no second person approved, whatever Airflow's task states say
    (a cleared or hand-marked task must not get past a rejection)."""
    if run.status != "running":
        raise NotPermitted(f"run {run.id} is {run.status}: nothing more is deleted in it")
    approval = APPROVAL.get(run.kind)
    if approval and not ledger.run_events(run.id, approval):
        raise NotPermitted(f"{run.kind} run {run.id} has no {approval} event: nothing is deleted before approval")


def execute_task(ledger: Ledger, store: Store, task: PlannedTask, *, actor: str) -> int:
    selector = selector_of(task)
    checkpoint = dict(task.checkpoint or {})
    affected = task.affected_count
    if checkpoint.get("pending"):
        checkpoint, affected = _recover(ledger, store, task, selector, checkpoint, affected, actor)
    for batch in store.batches(selector, after=checkpoint.get("after"), **count_mode(task.action)):
        if _held(ledger, task):
            ledger.update_task(task.id, ("task.held", _ids(task)), status="held", actor=actor)
            log_task("task.held", task, affected=affected)
            return affected - task.affected_count
        ledger.update_task(task.id, ("batch.intent", {**_ids(task), **_batch_fields(batch)}), status="running",
                           checkpoint={**checkpoint, "pending": _pending(batch)}, actor=actor)
        outcome = _apply(store, task.action, batch)
        affected += outcome.affected
        checkpoint = {"after": batch.upper}
        counts = {"affected": outcome.affected, "retained": sum(r.count for r in outcome.retained)}
        ledger.update_task(task.id, ("batch.outcome", {**_ids(task), **counts}),
                           checkpoint=checkpoint, affected_count=affected, actor=actor)
        log_task("batch.outcome", task, **counts)
    # A finished task needs no cursor, and an object key in it could carry personal data.
    ledger.update_task(task.id, ("task.done", {**_ids(task), "affected": affected}), status="done",
                       checkpoint=None, actor=actor)
    log_task("task.done", task, affected=affected)
    return affected - task.affected_count


def _apply(store: Store, action: str, batch: PendingBatch):
    return {"anonymize": store.anonymize, "isolate": store.isolate}.get(action, store.delete)(batch)


def _recover(ledger: Ledger, store: Store, task: PlannedTask, selector: Selector, checkpoint: dict,
             affected: int, actor: str) -> tuple[dict, int]:
    pending = checkpoint["pending"]
    remaining = _remaining(store, task, selector, pending)
    gone = max(0, pending["count"] - remaining)
    checkpoint = {"after": pending["after"]}  # the unfinished range is listed again; only what is left
    ledger.update_task(task.id, ("batch.recovered", {**_ids(task), "affected": gone, "remaining": remaining}),
                       checkpoint=checkpoint, affected_count=affected + gone, actor=actor)
    log_task("batch.recovered", task, affected=gone, remaining=remaining)
    return checkpoint, affected + gone


def _remaining(store: Store, task: PlannedTask, selector: Selector, pending: dict) -> int:
    return store.count(selector, pending["after"], pending["upper"], **count_mode(task.action))



def _held(ledger: Ledger, task: PlannedTask) -> bool:
    """Re-read before every batch: a hold placed mid-run stops deletion before the next batch."""
    now = pendulum.now("UTC")
    return any(h.applies(task.account_id, task.data_class, now) for h in ledger.resolver_holds())


def _ids(task: PlannedTask) -> dict:
    return {"location": task.location, "account_id": task.account_id, "data_class": task.data_class,
            "action": task.action}


def _pending(batch: PendingBatch) -> dict:
    return {"after": batch.after, "upper": batch.upper, "count": batch.count}


def _batch_fields(batch: PendingBatch) -> dict:
    # Cursors may be object keys, which can carry personal data: the chain gets their digests only.
    return {"count": batch.count, "after_sha256": _sha(batch.after), "upper_sha256": _sha(batch.upper)}


def _sha(value: str | None) -> str | None:
    return hashlib.sha256(value.encode()).hexdigest() if value is not None else None
