"""Completion strategies, one per ``completion.kind`` of a resource, chosen from ``STRATEGIES`` by the kind:
what an accepted deletion still needs before it is done. Each says where a job id sits in a delete's answer,
whether the erasure waits for such jobs, what purge follows the deletes, and what the result claims once the
deletes are sent (``settle``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar

from retention.subprocessors.results import ResourceResult
from retention.subprocessors.spec import AsyncJob, AsyncUnpollable, Completion, Delete, SoftDelete, Sync
from retention.subprocessors.values import after

K = TypeVar("K", Sync, AsyncJob, AsyncUnpollable, SoftDelete)


class Completing(Generic[K]):
    waits_for_jobs = False  # the erasure waits for the jobs it starts (``Progress.jobs``)

    config: K

    def __init__(self, config: K) -> None:
        self.config = config

    @property
    def job_id(self) -> str | None:
        """Where a delete's answer names the job it started (recorded as a digest), if anywhere."""
        return None

    @property
    def purge(self) -> Delete | None:
        """A delete that follows the deletes (emptying a bin), if any."""
        return None

    def settle(self, result: ResourceResult, acted: bool, now: datetime) -> None:
        """What the result claims once the deletes are sent (``acted``: something was deleted or a job started)."""


class Immediate(Completing[Sync]):
    pass


class PolledJob(Completing[AsyncJob]):
    waits_for_jobs = True

    @property
    def job_id(self) -> str | None:
        return self.config.job_id


class UnpollableJob(Completing[AsyncUnpollable]):
    @property
    def job_id(self) -> str | None:
        return self.config.job_id

    def settle(self, result: ResourceResult, acted: bool, now: datetime) -> None:
        if acted:
            result.status = "awaiting_provider"
            result.complete_by = after(now, self.config.assume_done_after)


class RecycleBin(Completing[SoftDelete]):
    @property
    def purge(self) -> Delete | None:
        return self.config.purge

    def settle(self, result: ResourceResult, acted: bool, now: datetime) -> None:
        if self.config.bin_retention is not None and acted:  # the bin empties itself by then
            result.status = "awaiting_provider"
            result.complete_by = after(now, self.config.bin_retention)


# The strategy for each completion kind (the tag pydantic chose the config's model by).
STRATEGIES: dict[str, type[Completing[Any]]] = {
    "sync": Immediate,
    "async_job": PolledJob,
    "async_unpollable": UnpollableJob,
    "soft_delete": RecycleBin,
}


def completing(config: Completion) -> Completing[Any]:
    return STRATEGIES[config.kind](config)
