"""Delete for many accounts of one location at once: a cohort is the runnable delete tasks with the same anchor
and data class, each account keeping its own cutoff, deleted together in key ranges (``CohortDeleting``).

Per batch, as for one task: the run must still be open, the holds in force for all the cohort's accounts are
read in ONE query right before it (a held account leaves the cohort: its task becomes ``held``, the others go
on), the intent (range and per-task counts) is written ahead, the store deletes the range for the accounts
still in the cohort, and the outcome adds each task's rows (as ``RETURNING`` counted them) and moves the
cursor. Before a retried transaction (the application's row locks) the holds are read again.

Killed between intent and outcome, a rerun counts per account what is still in the pending range (one grouped
query) and records intent − remaining per task as deleted, once; the range is then looked at again.

One executor at a time per cohort: a lock on (run, location, shard, cohort) that the server or kernel drops
when its holder dies, and one fencing token on all its tasks that every ledger write checks (``ClaimLost``).
The ledger is its own database, not the location's: the intent cannot commit inside the DELETE's
transaction, so it is written ahead, before the DELETE, and recovery reconciles.

When done: the tasks become ``done`` in one UPDATE with ONE ``cohort.done`` event (location, data class,
action, tasks, affected).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from retention.engine.shards import Shard
from retention.engine.steplog import log_step, log_task
from retention.ledger import Ledger
from retention.ledger.cohorts import PendingRange
from retention.ledger.models import PlannedTask
from retention.stores.base import BatchLocked, Cohort, CohortBatch, CohortDeleting, CohortOutcome

RUNNABLE = ("planned", "running")


class CohortHeld(Exception):
    """Holds came into force for some accounts while a batch was being tried again; the store rolled it back."""

    def __init__(self, held: dict[str, list[str]]) -> None:
        super().__init__(", ".join(sorted({h for ids in held.values() for h in ids})))
        self.held = held


@dataclass(frozen=True)
class CohortKey:
    anchor: str | None
    data_class: str
    action: str = "delete"


def cohorts_of(tasks: Iterable[PlannedTask]) -> dict[CohortKey, list[PlannedTask]]:
    grouped: dict[CohortKey, list[PlannedTask]] = {}
    for task in tasks:
        grouped.setdefault(CohortKey(task.anchor, task.data_class, task.action), []).append(task)
    return grouped


def cohort_id(run_id: str, location: str, shard: Shard | None, key: CohortKey) -> str:
    parts = [run_id, location, "" if shard is None else f"{shard.index}/{shard.count}", key.action,
             key.anchor or "", key.data_class]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def execute_cohort(ledger: Ledger, store: CohortDeleting, run_id: str, location: str, key: CohortKey,
                   tasks: list[PlannedTask], *, actor: str, check_run: Callable[[], None],
                   shard: Shard | None = None) -> int:
    """Claim the cohort, then delete what its tasks still have due; returns the rows deleted by this call.
    ``check_run`` raises when the run may no longer delete (closed, or not approved)."""
    ident = cohort_id(run_id, location, shard, key)
    with ledger.claim_cohort(ident, run_id, location, [t.id for t in tasks]) as fence:
        # After the claim: a previous holder may have moved tasks on or finished them since the list was read.
        wanted = {t.id for t in tasks}
        current = [t for t in ledger.tasks(run_id, location=location, statuses=RUNNABLE) if t.id in wanted]
        run = _CohortRun(ledger, store, run_id, location, key, ident, fence, current, actor, check_run)
        return run.execute()


class _CohortRun:
    """One claimed cohort being executed: the tasks still in it, its cursor, the rows deleted by this call."""

    def __init__(self, ledger: Ledger, store: CohortDeleting, run_id: str, location: str, key: CohortKey,
                 ident: str, fence: int, tasks: list[PlannedTask], actor: str, check_run: Callable[[], None]) -> None:
        self.ledger, self.store, self.run_id, self.location, self.key = ledger, store, run_id, location, key
        self.ident, self.fence, self.actor, self.check_run = ident, fence, actor, check_run
        self.tasks = {t.account_id: t for t in tasks}  # accounts still in the cohort
        self.event_task = tasks[0].id if len(tasks) == 1 else None  # a one-task cohort's events name the task
        self.affected = 0

    def execute(self) -> int:
        if not self.tasks:
            return 0
        state = self.ledger.cohort_state(self.ident)
        after = state.after if state else None
        if state and state.pending:
            after = self._recover(state.pending)
        while self.tasks:
            self.check_run()
            self._hold(self.ledger.holds_in_force_many(list(self.tasks), self.key.data_class))
            if not self.tasks:
                break
            batch = self.store.cohort_range(self._cohort(), after)
            if batch is None:
                break
            outcome = self._delete(batch)
            if outcome is not None:
                after = batch.upper
        self._finish()
        return self.affected

    def _delete(self, batch: CohortBatch) -> CohortOutcome | None:
        """One batch, written ahead; None when holds stopped it (rolled back: its range stays to do)."""
        counts = {self.tasks[a].id: n for a, n in batch.counts.items()}
        pending = PendingRange(batch.after, batch.upper, counts)
        self.ledger.record_intent(self.ident, self.run_id, list(counts), self.fence, pending,
                                  ("batch.intent", {**self._ids(), **_batch_fields(batch)}),
                                  actor=self.actor, task_id=self.event_task)
        # Only the accounts the range holds rows of are joined in the DELETE, and their holds are what a retry
        # checks again.
        accounts = list(batch.counts)
        batch = CohortBatch(Cohort(self.key.anchor, {a: self.tasks[a].cutoff for a in accounts}), batch.after,
                            batch.upper, batch.counts, batch.planned, recheck=lambda: self._stop_if_held(accounts))
        try:
            outcome = self.store.cohort_delete(batch)
        except CohortHeld as held:  # nothing of the batch went: clear the intent, then hold those accounts
            stopped = {"affected": 0, "held": len(held.held)}
            self._outcome({}, batch.after, ("batch.outcome", {**self._ids(), **stopped}))
            log_step("batch.outcome", run_id=self.run_id, location=self.location, cohort=self.ident[:16], **stopped)
            self._hold(held.held)
            return None
        except BatchLocked as locked:  # every try rolled back: say so, then let the run fail and be retried
            self._outcome({}, batch.after, ("batch.locked", {**self._ids(), "lock_retries": locked.retries}))
            raise
        added = {self.tasks[a].id: n for a, n in outcome.deleted.items()}  # the DELETE joined only these accounts
        fields: dict[str, Any] = {"affected": sum(added.values()), "accounts": len(added)}
        if outcome.lock_retries:
            fields["lock_retries"] = outcome.lock_retries
        self._outcome(added, batch.upper, ("batch.outcome", {**self._ids(), **fields}))
        self.affected += fields["affected"]
        log_step("batch.outcome", run_id=self.run_id, location=self.location, cohort=self.ident[:16], **fields)
        return outcome

    def _recover(self, pending: PendingRange) -> str | None:
        """A batch whose intent has no outcome: what of it is gone was deleted by the killed executor."""
        by_id = {t.id: t for t in self.tasks.values()}
        in_flight = {by_id[tid].account_id: n for tid, n in pending.counts.items() if tid in by_id}
        remaining: dict[str, int] = {}
        if in_flight:
            cohort = Cohort(self.key.anchor, {a: self.tasks[a].cutoff for a in in_flight})
            remaining = self.store.cohort_count(cohort, pending.after, pending.upper)
        gone = {self.tasks[a].id: max(0, n - remaining.get(a, 0)) for a, n in in_flight.items()}
        fields = {"affected": sum(gone.values()), "remaining": sum(remaining.values())}
        self._outcome(gone, pending.after, ("batch.recovered", {**self._ids(), **fields}))
        self.affected += fields["affected"]
        log_step("batch.recovered", run_id=self.run_id, location=self.location, cohort=self.ident[:16], **fields)
        return pending.after  # the unfinished range is looked at again; only what is left

    def _hold(self, held: dict[str, list[str]]) -> None:
        for account, holds in sorted(held.items()):
            task = self.tasks.pop(account, None)
            if task is None:
                continue
            self.ledger.update_task(task.id, ("task.held", {**_task_ids(task), "holds": holds}), status="held",
                                    actor=self.actor, fence=self.fence)
            log_task("task.held", task, affected=self.ledger.task(task.id).affected_count)

    def _stop_if_held(self, accounts: list[str]) -> None:
        held = self.ledger.holds_in_force_many(accounts, self.key.data_class)
        if held:
            raise CohortHeld(held)

    def _finish(self) -> None:
        if not self.tasks:
            return
        ids = [t.id for t in self.tasks.values()]
        event = ("cohort.done", {**self._ids(), "tasks": len(ids)})
        total = self.ledger.finish_cohort(self.ident, self.run_id, ids, self.fence, event, actor=self.actor,
                                          task_id=self.event_task)
        log_step("cohort.done", run_id=self.run_id, location=self.location, cohort=self.ident[:16],
                 data_class=self.key.data_class, action=self.key.action, tasks=len(ids), affected=total)

    def _outcome(self, added: dict[str, int], after: str | None, event: tuple[str, dict[str, Any]]) -> None:
        self.ledger.record_outcome(self.ident, self.run_id, self.fence, added, after, event, actor=self.actor,
                                   task_id=self.event_task)

    def _cohort(self) -> Cohort:
        return Cohort(self.key.anchor, {a: t.cutoff for a, t in self.tasks.items()})

    def _ids(self) -> dict[str, Any]:
        return {"location": self.location, "data_class": self.key.data_class, "action": self.key.action,
                "cohort": self.ident}


def _task_ids(task: PlannedTask) -> dict[str, Any]:
    return {"location": task.location, "account_id": task.account_id, "data_class": task.data_class,
            "action": task.action}


def _batch_fields(batch: CohortBatch) -> dict[str, Any]:
    # Cursors may be keys that carry personal data: the chain gets their digests only, and no per-account count.
    return {"count": sum(batch.counts.values()), "accounts": len(batch.counts),
            "after_sha256": _sha(batch.after), "upper_sha256": _sha(batch.upper)}


def _sha(value: str | None) -> str | None:
    return hashlib.sha256(value.encode()).hexdigest() if value is not None else None
