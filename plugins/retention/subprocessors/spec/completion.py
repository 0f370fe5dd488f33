"""How a deletion completes, one model per ``kind:``; the executor's strategy for each is in
``retention.subprocessors.completion``."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from retention.rules.model import Duration, Strict, Text
from retention.subprocessors.spec.delete import Delete
from retention.subprocessors.spec.pagination import Pagination
from retention.subprocessors.spec.request import DotPath, Request


class Sync(Strict):
    kind: Literal["sync"]


class AsyncJob(Strict):
    """A deletion job the provider reports on. ``status`` asks for one job (``{job_id}``), or, where the
    provider only lists jobs (Datadog's deletion requests), ``items`` names the list in the answer and
    ``item_id`` the field matched against the job id, read across ``pagination``'s pages."""

    kind: Literal["async_job"]
    job_id: DotPath  # in the delete response
    status: Request  # may use {job_id}
    status_field: DotPath
    items: DotPath | None = None  # the status call lists jobs: find ours in this list
    item_id: DotPath = "id"
    pagination: Pagination | None = None  # of the job listing (the loader requires it with items)
    done: list[str] = Field(min_length=1)
    failed: list[str] = Field(default_factory=list)
    poll_every: Duration
    max_wait: Duration


class AsyncUnpollable(Strict):
    """Accepted, with no way to ask: complete by ``assume_done_after`` (SendGrid erase job). The period is
    either the provider's (``source`` says where it states it) or ours, and then the resource (or spec)
    names it among its ``assumptions`` with ``bears_on: outcome`` (the loader refuses neither)."""

    kind: Literal["async_unpollable"]
    assume_done_after: Duration
    job_id: DotPath | None = None  # recorded when the provider returns one
    source: Text | None = None  # where the provider documents the completion period


class SoftDelete(Strict):
    """Deletion moves records to a bin: ``purge`` removes them for good, or, where the API offers no
    purge, the bin empties itself after ``bin_retention`` (Salesforce's recycle bin: 15 days)."""

    kind: Literal["soft_delete"]
    purge: Delete | None = None
    bin_retention: Duration | None = None

    @model_validator(mode="after")
    def _purge_or_expiry(self) -> SoftDelete:
        if (self.purge is None) == (self.bin_retention is None):
            raise ValueError("give purge (a delete that empties the bin) or bin_retention, not both")
        return self


Completion = Annotated[Sync | AsyncJob | AsyncUnpollable | SoftDelete, Field(discriminator="kind")]
