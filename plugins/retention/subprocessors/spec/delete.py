"""A delete request and how its answers are read."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from retention.rules.model import Strict, Text
from retention.subprocessors.spec.request import DotPath, Request, Status


class Outcomes(Strict):
    """How a response (or one item of a per-item result) is read."""

    statuses: list[Status] = Field(default_factory=list)
    codes: list[str | int] = Field(default_factory=list)  # provider error codes at ``error_code``


class ItemResults(Strict):
    """Per-item results in one response (Salesforce sObject Collections). Item codes are read apart from
    a whole call's error codes: a whole-call NOT_FOUND (a wrong path) must never read as "already gone"."""

    items: DotPath = ""
    id: DotPath = "id"
    success: DotPath = "success"
    error_code: DotPath = "errors.0.statusCode"
    already_deleted: list[str | int] = Field(default_factory=list)
    retry_later: list[str | int] = Field(default_factory=list)


class Delete(Strict):
    scope: Literal["record", "subject", "tenant", "query"] = "record"
    request: Request
    batch: int = Field(default=1, ge=1, le=10_000)  # ids per call; > 1 needs {ids}
    ids_join: str = ","
    ids_repeat: Text | None = None  # send each id as its own query parameter of this name (Sentry ?id=1&id=2)
    success: list[Status] = Field(default_factory=lambda: [200, 202, 204])
    error_code: DotPath = "code"  # where the provider's error code sits in an error body
    already_deleted: Outcomes = Field(default_factory=lambda: Outcomes(statuses=[404]))
    retry_later: Outcomes = Field(default_factory=Outcomes)  # e.g. Twilio 20009: not deletable yet
    results: ItemResults | None = None
