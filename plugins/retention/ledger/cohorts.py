"""Cohorts: the planned tasks of one location with the same action, anchor and data class, executed together.

A cohort is claimed as a whole (the same server or kernel lock as ``claim``, keyed on the cohort's id); its
checkpoint row and every task of it get one new fencing token in one UPDATE. Every write below checks that token
on the cohort's row and on the tasks it touches, and raises ``ClaimLost`` (nothing written) if another executor
claimed the cohort or any of those tasks since: a batch's writes touch the batch's tasks, never the whole cohort.

Write-ahead per batch, as for a single task: ``record_intent`` before the destructive statement (the range,
and per task its rows in the range, in the cohort's checkpoint row; the chain gets the location, the sum
and the cursors' digests), ``record_outcome`` after it (each task's count added by the database, the cursor
moved, the event appended, in one transaction).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, bindparam, func, select, update
from sqlalchemy.orm import Session

from retention.ledger.models import CohortCheckpoint, PlannedTask
from retention.ledger.runs import ClaimLost, RunsAndTasks

CHUNK = 1_000  # ids per IN list: far below SQLite's and PostgreSQL's bound-parameter limits
Event = tuple[str, Mapping[str, object]]


@dataclass(frozen=True)
class PendingRange:
    """A cohort's batch between its intent and its outcome: (after, upper] and each task's rows in it."""

    after: str | None
    upper: str
    counts: dict[str, int]  # task id -> rows of its account in the range when the intent was written

    def as_json(self) -> dict[str, Any]:
        return {"after": self.after, "upper": self.upper, "counts": dict(self.counts)}

    @classmethod
    def of(cls, value: Mapping[str, Any]) -> PendingRange:
        return cls(after=value["after"], upper=value["upper"],
                   counts={str(k): int(v) for k, v in value["counts"].items()})


@dataclass(frozen=True)
class CohortState:
    after: str | None  # every range up to here is done for the cohort's tasks
    pending: PendingRange | None


@dataclass(frozen=True)
class Verified:
    """One task's verification as the verifier found it in detail (a task with residue, or a held one)."""

    task_id: str
    status: str  # "verified" | "residue" | "held"
    residue: int
    retained: list[dict[str, Any]]
    event: Mapping[str, object]  # the task.verified payload


class Verifications(RunsAndTasks):
    """Writing a location's verification in bulk."""

    def record_verification(self, run_id: str, clean: Sequence[str], detailed: Sequence[Verified],
                            event: Event, *, actor: str) -> None:
        """Tasks found clean by the location's tally become ``verified`` (residue 0) in one UPDATE per thousand;
        each detailed task gets its status and a ``task.verified`` event; then ONE event for the location."""
        def write() -> None:
            with self.session() as s:
                for chunk in _chunks(clean):
                    s.connection().execute(update(PlannedTask).where(PlannedTask.id.in_(chunk))
                                           .values(status="verified", residue=0, retained=[]))
                for found in detailed:
                    s.connection().execute(update(PlannedTask).where(PlannedTask.id == found.task_id).values(
                        status=found.status, residue=found.residue, retained=found.retained))
                    self.append("task.verified", found.event, actor=actor, run_id=run_id, task_id=found.task_id,
                                session=s)
                self.append(event[0], event[1], actor=actor, run_id=run_id, session=s)
        self._retrying(write, f"verification of run {run_id}")


class CohortTasks(Verifications):
    """Claiming, checkpointing and finishing a cohort of planned tasks with bulk writes."""

    @contextmanager
    def claim_cohort(self, cohort_id: str, run_id: str, location: str, task_ids: Sequence[str]) -> Iterator[int]:
        """Hold the cohort for the block (``TaskBusy`` if another executor does); yields the fencing token now
        set on the cohort's checkpoint row and on every one of ``task_ids``."""
        with self._task_lock(cohort_id):
            yield self._retrying(lambda: self._fence(cohort_id, run_id, location, task_ids),
                                 f"claim of cohort {cohort_id}")

    def _fence(self, cohort_id: str, run_id: str, location: str, task_ids: Sequence[str]) -> int:
        with self.session() as s:
            row = s.get(CohortCheckpoint, cohort_id, with_for_update=True)
            highest = row.fence if row is not None else 0
            for chunk in _chunks(task_ids):  # FOR UPDATE: no claim of one of them slips in before ours
                fences = s.scalars(select(PlannedTask.fence).where(PlannedTask.id.in_(chunk)).with_for_update())
                highest = max([highest, *fences])
            fence = highest + 1
            for chunk in _chunks(task_ids):
                s.execute(update(PlannedTask).where(PlannedTask.id.in_(chunk)).values(fence=fence))
            if row is None:
                s.add(CohortCheckpoint(id=cohort_id, run_id=run_id, location=location, after=None, fence=fence))
            else:
                row.fence = fence
        return fence

    def cohort_state(self, cohort_id: str) -> CohortState | None:
        with self._reader() as s:
            row = s.get(CohortCheckpoint, cohort_id)
        if row is None:
            return None
        return CohortState(row.after, PendingRange.of(row.pending) if row.pending else None)

    def record_intent(self, cohort_id: str, run_id: str, task_ids: Sequence[str], fence: int, pending: PendingRange,
                      event: Event, *, actor: str, task_id: str | None = None) -> None:
        """Before a batch: the batch's tasks (``task_ids``: those with rows in it) run, and the range and its
        per-task counts are the cohort's pending batch. The token is checked on the cohort's row and on the
        batch's tasks only, so a batch costs the same whatever the size of the cohort."""
        def write() -> None:
            with self.session() as s:
                row = _claimed(s, cohort_id, fence)
                _check_fence(s, task_ids, fence, status="running")
                row.pending = pending.as_json()
                s.flush()
                self.append(event[0], event[1], actor=actor, run_id=run_id, task_id=task_id, session=s)
        self._retrying(write, f"intent of cohort {cohort_id}")

    def record_outcome(self, cohort_id: str, run_id: str, fence: int, added: Mapping[str, int], after: str | None,
                       event: Event, *, actor: str, task_id: str | None = None) -> None:
        """After a batch (or its recovery): each task's count grows by ``added[task]`` (by the database, one
        UPDATE statement for all of them), the cursor moves to ``after`` and the pending batch is cleared."""
        def write() -> None:
            with self.session() as s:
                row = _claimed(s, cohort_id, fence)
                _check_fence(s, list(added), fence)
                table = PlannedTask.__table__
                assert isinstance(table, Table)  # a declarative model's table
                rows = [{"task": task, "n": n} for task, n in added.items() if n]
                if rows:
                    s.connection().execute(update(table).where(table.c.id == bindparam("task"))
                                           .values(affected_count=table.c.affected_count + bindparam("n")), rows)
                row.after, row.pending = after, None
                s.flush()
                self.append(event[0], event[1], actor=actor, run_id=run_id, task_id=task_id, session=s)
        self._retrying(write, f"outcome of cohort {cohort_id}")

    def finish_cohort(self, cohort_id: str, run_id: str, task_ids: Sequence[str], fence: int, event: Event, *,
                      actor: str, task_id: str | None = None) -> int:
        """The tasks are done (one UPDATE), with one event for the cohort; the cursor is cleared (a key may carry
        personal data). Returns the tasks' affected counts summed."""
        def write() -> int:
            with self.session() as s:
                row = _claimed(s, cohort_id, fence)
                _check_fence(s, task_ids, fence, status="done", checkpoint=None)
                row.after, row.pending = None, None
                total = sum(int(s.scalar(select(func.coalesce(func.sum(PlannedTask.affected_count), 0))
                                         .where(PlannedTask.id.in_(chunk))) or 0) for chunk in _chunks(task_ids))
                kind, payload = event
                self.append(kind, {**payload, "affected": total}, actor=actor, run_id=run_id, task_id=task_id,
                            session=s)
                return total
        return self._retrying(write, f"finish of cohort {cohort_id}")


def _claimed(s: Session, cohort_id: str, fence: int) -> CohortCheckpoint:
    """The cohort's checkpoint row, locked, if it still carries our token; else ``ClaimLost``."""
    row = s.get(CohortCheckpoint, cohort_id, with_for_update=True)
    if row is None or row.fence != fence:
        raise ClaimLost(f"cohort {cohort_id} was claimed by another executor (our token {fence}): this one stops")
    return row


def _check_fence(s: Session, task_ids: Sequence[str], fence: int, **values: object) -> None:
    """Set ``values`` (at least the token itself, which locks the rows) on every task still carrying ``fence``;
    ``ClaimLost`` unless that is all of them (the caller's transaction then rolls back)."""
    changed = 0
    for chunk in _chunks(task_ids):
        result = s.connection().execute(update(PlannedTask).where(PlannedTask.id.in_(chunk), PlannedTask.fence == fence)
                                        .values(fence=fence, **values))
        changed += result.rowcount
    if changed != len(task_ids):
        raise ClaimLost(f"{len(task_ids) - changed} of {len(task_ids)} planned task(s) were claimed by another "
                        f"executor (our token {fence}): this one stops")


def _chunks(ids: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(ids), CHUNK):
        yield ids[start:start + CHUNK]
