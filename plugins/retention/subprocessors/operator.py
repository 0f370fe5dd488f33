"""The Airflow operator that erases one resource of one account at one subprocessor."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import BaseOperator

from retention.subprocessors import tasks as steps
from retention.subprocessors.errors import SubprocessorError
from retention.subprocessors.spec import AsyncJob
from retention.subprocessors.trigger import JobTrigger


class EraseResourceOperator(BaseOperator):
    """Find, delete and verify; while the provider runs async deletion jobs the task is deferred to
    ``JobTrigger`` (the triggerer polls; no worker slot waits), then resumes where it stopped. A
    capped search may take several such rounds. Returns the resource's result (``ResourceResult``)."""

    template_fields = ("account_id",)

    def __init__(self, *, subprocessor: str, resource: str, account_id: str, actor: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.subprocessor = subprocessor
        self.resource = resource
        self.account_id = account_id
        self.actor = actor

    def execute(self, context: Any) -> dict[str, Any]:
        return self._go_on(steps.begin_erasure(self.subprocessor, self.resource, self.account_id, actor=self.actor))

    def resume(self, context: Any, event: dict[str, Any]) -> dict[str, Any]:
        return self._go_on(steps.resume_erasure(self.subprocessor, event, actor=self.actor))

    def _go_on(self, progress: dict[str, Any]) -> dict[str, Any]:
        if not progress["jobs"]:
            result: dict[str, Any] = progress["result"]
            return result
        completion = steps.specs()[self.subprocessor].resources[self.resource].completion
        if not isinstance(completion, AsyncJob):  # only an async_job completion starts jobs to wait for
            raise SubprocessorError(f"{self.subprocessor}/{self.resource}: jobs to wait for, but completion "
                                    f"{completion.kind} starts none")
        wait = timedelta(seconds=completion.max_wait.nominal_seconds)
        deadline = (datetime.now(UTC) + wait).isoformat()
        self.defer(trigger=JobTrigger(self.subprocessor, progress, deadline), method_name="resume",
                   timeout=wait + timedelta(minutes=10))
