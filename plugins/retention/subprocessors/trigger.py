"""Wait for a subprocessor's async deletion jobs in Airflow's triggerer, not in a worker slot.

``JobTrigger`` polls every job of a ``Progress`` until each is final (or the spec's ``max_wait`` has
passed), sleeping between rounds with ``asyncio.sleep``. Each status call is the spec's own, through
the same ``Client`` as the worker (tenacity retries, Retry-After), run in a thread so the event loop
never blocks. The trigger writes nothing: the HTTP calls it made travel back in the event, and the
resumed task appends them to the ledger, where every other call of the erasure already is. The event
also carries the ``Progress`` back (``dag.test()`` resumes a task with the event alone, dropping the
deferral's kwargs), so the task needs nothing else to go on.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from retention.subprocessors.connection import Credentials
from retention.subprocessors.errors import SubprocessorError
from retention.subprocessors.executor import Eraser, polls_only
from retention.subprocessors.http import Client
from retention.subprocessors.results import Progress
from retention.subprocessors.spec import AsyncJob


class JobTrigger(BaseTrigger):
    def __init__(self, subprocessor: str, progress: dict[str, Any], deadline: str) -> None:
        """``progress``: ``Progress.to_json()``; ``deadline``: ISO 8601 UTC, after which the jobs count as stuck."""
        super().__init__()  # type: ignore[no-untyped-call]  # Airflow's BaseTrigger.__init__ is unannotated
        self.subprocessor = subprocessor
        self.progress = progress
        self.deadline = deadline

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}",
                {"subprocessor": self.subprocessor, "progress": self.progress, "deadline": self.deadline})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow.sdk import BaseHook

        from retention.subprocessors.tasks import specs

        spec = (await asyncio.to_thread(specs))[self.subprocessor]
        credentials = Credentials.of(spec, await BaseHook.aget_connection(spec.api.conn_id))
        progress = Progress.from_json(self.progress)
        completion = spec.resources[progress.result.resource].completion
        calls: list[dict[str, Any]] = []
        states: dict[str, str] = {}
        with Client(spec, credentials, on_call=calls.append) as client:
            eraser = Eraser(spec, client, lambda kind, payload: None, holds=polls_only)
            try:
                if not isinstance(completion, AsyncJob):
                    raise SubprocessorError(f"{self.subprocessor}/{progress.result.resource}: completion "
                                            f"{completion.kind} starts no jobs to wait for")
                while not await asyncio.to_thread(eraser.poll_jobs, progress, states):
                    if datetime.now(UTC) > datetime.fromisoformat(self.deadline):
                        raise SubprocessorError(f"{self.subprocessor}: job not finished within {completion.max_wait}")
                    await asyncio.sleep(completion.poll_every.nominal_seconds)
            except SubprocessorError as exc:
                yield TriggerEvent(  # type: ignore[no-untyped-call]  # Airflow's TriggerEvent is unannotated
                    {"error": str(exc), "calls": calls, "states": states, "progress": self.progress})
                return
        yield TriggerEvent(  # type: ignore[no-untyped-call]  # Airflow's TriggerEvent is unannotated
            {"states": states, "calls": calls, "progress": self.progress})
