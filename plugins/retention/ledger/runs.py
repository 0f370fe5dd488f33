"""Runs and their planned tasks: starting and finishing a run, recording its plan, and the claim that lets
one executor at a time run a task (a lock the database server or the kernel releases when its holder dies,
and a fencing token every write checks)."""

from __future__ import annotations

import fcntl
import hashlib
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from retention.ids import check_account_id
from retention.ledger.chain import iso_utc
from retention.ledger.checks import SHA256, check_kind, check_optional_text, check_staff, check_text
from retention.ledger.clock import now
from retention.ledger.events import EventLog, append_event
from retention.ledger.models import PlannedTask, Run, utc

# rejected: an offboarding its approver refused; superseded: a plan made again by a retried plan task
RUN_FINAL_STATUSES = ("succeeded", "failed", "rejected", "superseded")


class TaskBusy(RuntimeError):
    """Another executor holds the planned task: this one must not run it now (try again later)."""


class ClaimLost(RuntimeError):
    """The task was claimed by another executor since this one claimed it: this one stops at once."""


class RunsAndTasks(EventLog):
    """Runs, their planned tasks, and claiming a task (``update_task`` appends through ``EventLog``)."""

    def start_run(self, kind: str, *, dry_run: bool, as_of: datetime, rules_digest: str,
                  dag_id: str | None = None, airflow_run_id: str | None = None,
                  actor: str) -> str:
        if not isinstance(rules_digest, str) or not SHA256.fullmatch(rules_digest):
            raise ValueError("rules_digest must be a sha256 hex digest (64 lowercase hex characters)")
        run = Run(id=uuid.uuid4().hex, kind=check_kind(kind, "run kind"), status="running",
                  dry_run=bool(dry_run), as_of=utc(as_of), rules_digest=rules_digest,
                  dag_id=check_optional_text(dag_id, "dag_id"),
                  airflow_run_id=check_optional_text(airflow_run_id, "airflow_run_id"),
                  started_at=now())
        actor = check_staff(actor, "actor")
        with self.session() as s:
            s.add(run)
            s.flush()
            append_event(s, kind="run.started", actor=actor, run_id=run.id, payload={
                "kind": run.kind, "dry_run": run.dry_run, "as_of": iso_utc(run.as_of),
                "rules_digest": run.rules_digest, "dag_id": run.dag_id,
                "airflow_run_id": run.airflow_run_id,
            })
        return run.id

    def finish_run(self, run_id: str, status: str, *, actor: str) -> None:
        if status not in RUN_FINAL_STATUSES:
            raise ValueError(f"status {status!r} is not one of {', '.join(RUN_FINAL_STATUSES)}")
        actor = check_staff(actor, "actor")
        with self.session() as s:
            run = s.scalars(select(Run).where(Run.id == run_id).with_for_update()).one_or_none()
            if run is None:
                raise LookupError(f"no run with id {run_id!r}")
            if run.status != "running":
                raise ValueError(f"run {run_id} already finished with status {run.status!r}")
            run.status, run.finished_at = status, now()
            s.flush()
            append_event(s, kind="run.finished", actor=actor, run_id=run.id,
                    payload={"kind": run.kind, "status": status})

    def last_run_id(self, kind: str) -> str | None:
        with self._reader() as s:
            return s.scalars(select(Run.id).where(Run.kind == kind).order_by(Run.started_at.desc()).limit(1)).first()

    def open_runs(self, kind: str, *, airflow_run_id: str | None = None) -> list[Run]:
        """Runs of ``kind`` not finished yet (of one Airflow run, if given), oldest first."""
        query = select(Run).where(Run.kind == kind, Run.status == "running")
        if airflow_run_id is not None:
            query = query.where(Run.airflow_run_id == airflow_run_id)
        with self._reader() as s:
            return list(s.scalars(query.order_by(Run.started_at)))

    def runs_since(self, since: datetime) -> list[Run]:
        """Runs active at or after ``since`` (started then, still open, or finished then), oldest first."""
        since = utc(since)
        active = (Run.started_at >= since) | Run.finished_at.is_(None) | (Run.finished_at >= since)
        with self._reader() as s:
            return list(s.scalars(select(Run).where(active).order_by(Run.started_at)))

    def get_run(self, run_id: str) -> Run | None:
        with self._reader() as s:
            return s.get(Run, run_id)

    def add_planned_task(self, run_id: str, *, account_id: str, data_class: str, location: str,
                         action: str, rule_id: str, anchor: str | None = None,
                         cutoff: datetime | None = None, total_count: int | None = None,
                         estimated_count: int | None = None, skip_reason: str | None = None,
                         subject_request_id: str | None = None, session: Session | None = None) -> str:
        """Record one (account, data class, location) step of a run's plan; returns its id.

        With ``skip_reason`` the step is recorded as skipped: the plan says what is kept and why.
        """
        task = self._planned_task(run_id, account_id=account_id, data_class=data_class, location=location,
                                  action=action, rule_id=rule_id, anchor=anchor, cutoff=cutoff,
                                  total_count=total_count, estimated_count=estimated_count, skip_reason=skip_reason,
                                  subject_request_id=subject_request_id)
        with self._tx(session) as s:
            s.add(task)
            s.flush()
        return task.id

    def add_planned_tasks(self, run_id: str, rows: Iterable[Mapping[str, Any]], *,
                          session: Session | None = None) -> int:
        """Record many planned steps at once (each row: ``add_planned_task``'s keywords), checked the same way,
        in one multi-row INSERT per thousand rows; returns how many."""
        tasks = [self._planned_task(run_id, **row) for row in rows]
        with self._tx(session) as s:
            for start in range(0, len(tasks), 1_000):
                s.add_all(tasks[start:start + 1_000])
                s.flush()
        return len(tasks)

    @staticmethod
    def _planned_task(run_id: str, *, account_id: str, data_class: str, location: str, action: str, rule_id: str,
                      anchor: str | None = None, cutoff: datetime | None = None, total_count: int | None = None,
                      estimated_count: int | None = None, skip_reason: str | None = None,
                      subject_request_id: str | None = None) -> PlannedTask:
        return PlannedTask(
            id=uuid.uuid4().hex, run_id=run_id, account_id=check_account_id(account_id),
            data_class=check_text(data_class, "data_class"), location=check_text(location, "location", 500),
            action=check_text(action, "action", 32), rule_id=check_text(rule_id, "rule_id"),
            anchor=check_optional_text(anchor, "anchor"), cutoff=utc(cutoff) if cutoff else None,
            total_count=total_count, estimated_count=estimated_count,
            status="skipped" if skip_reason else "planned",
            skip_reason=None if skip_reason is None else check_text(skip_reason, "skip_reason", 500),
            affected_count=0, subject_request_id=subject_request_id,
        )

    def tasks(self, run_id: str, *, location: str | None = None,
              statuses: tuple[str, ...] | None = None) -> list[PlannedTask]:
        """A run's planned tasks (optionally of one location / in some statuses), in a stable order."""
        query = select(PlannedTask).where(PlannedTask.run_id == run_id)
        if location is not None:
            query = query.where(PlannedTask.location == location)
        if statuses is not None:
            query = query.where(PlannedTask.status.in_(statuses))
        with self._reader() as s:
            return list(s.scalars(query.order_by(PlannedTask.location, PlannedTask.account_id)))

    @contextmanager
    def claim(self, task_id: str) -> Iterator[int]:
        """Hold one planned task for this executor for the block; yields its fencing token.

        Two executors of one task (an Airflow retry while ``retention sweep --resume`` runs) must not both
        delete and count. The hold is a lock the database server (PostgreSQL: a session advisory lock) or
        the kernel (SQLite: ``flock`` beside the file) releases by itself when the holder dies, so a killed
        run can be resumed at once. The token is bumped on every claim and checked by every write with
        ``fence=``: a holder that lost its lock without knowing (a paused process whose connection was cut)
        is refused before its next batch. Raises ``TaskBusy`` when another executor holds the task.
        """
        with self._task_lock(task_id):
            with self.session() as s:
                bump = (update(PlannedTask).where(PlannedTask.id == task_id)
                        .values(fence=PlannedTask.fence + 1).returning(PlannedTask.fence))
                fence = s.execute(bump).scalar_one_or_none()
            if fence is None:
                raise LookupError(f"no planned task with id {task_id!r}")
            yield fence

    @contextmanager
    def _task_lock(self, task_id: str) -> Iterator[None]:
        if self.engine.dialect.name == "postgresql":
            key = int.from_bytes(hashlib.sha256(task_id.encode()).digest()[:8], "big", signed=True)
            with self.engine.connect() as conn:
                if not conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar_one():
                    raise TaskBusy(f"planned task {task_id} is being executed by another process")
                conn.commit()  # end the autobegun transaction; the session-level lock stays with the connection
                try:
                    yield
                finally:
                    with suppress(DBAPIError):  # a connection already cut took its lock with it
                        conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                        conn.commit()
            return
        database = self.engine.url.database
        if not database or database == ":memory:":  # one process owns an in-memory ledger
            yield
            return
        locks = Path(f"{database}.locks")
        locks.mkdir(exist_ok=True)
        with open(locks / f"{task_id}.lock", "w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise TaskBusy(f"planned task {task_id} is being executed by another process") from None
            yield  # closing the file releases the lock, as does the holder's death

    def task(self, task_id: str) -> PlannedTask:
        with self._reader() as s:
            task = s.get(PlannedTask, task_id)
        if task is None:
            raise LookupError(f"no planned task with id {task_id!r}")
        return task

    def update_task(self, task_id: str, event: tuple[str, Mapping[str, object]] | None = None, *, actor: str,
                    fence: int | None = None, add_affected: int = 0, **fields: object) -> None:
        """Change a task's state and append the event that says so, in one transaction.

        ``fence``: the token of the caller's claim; the write is refused (``ClaimLost``) if the task was
        claimed since. ``add_affected`` is added to the count by the database, never written as a total,
        so no writer can lose another's deletions.
        """
        self._retrying(lambda: self._update_task(task_id, event, actor, fence, add_affected, fields),
                       f"update of task {task_id}")

    def _update_task(self, task_id: str, event: tuple[str, Mapping[str, object]] | None, actor: str,
                     fence: int | None, add_affected: int, fields: Mapping[str, object]) -> None:
        with self.session() as s:
            task = s.get(PlannedTask, task_id, with_for_update=True)
            if task is None:
                raise LookupError(f"no planned task with id {task_id!r}")
            if fence is not None and task.fence != fence:
                raise ClaimLost(f"planned task {task_id} was claimed by another executor "
                                f"(token {task.fence}, ours {fence}): this one stops")
            for name, value in fields.items():
                setattr(task, name, value)
            s.flush()
            if add_affected:
                s.execute(update(PlannedTask).where(PlannedTask.id == task_id)
                          .values(affected_count=PlannedTask.affected_count + add_affected))
            if event is not None:
                kind, payload = event
                self.append(kind, payload, actor=actor, run_id=task.run_id, task_id=task.id, session=s)
