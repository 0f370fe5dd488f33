"""What an erasure has done so far: the resource's result, the provider-side tenants it works in, the async
jobs it waits for. A ``Progress`` is JSON (it travels through Airflow's trigger): scopes, job ids and counts,
never the ids of the records being deleted."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass
class ResourceResult:
    subprocessor: str
    resource: str
    data_class: str
    account_id: str
    found: int = 0  # the preview: matching records before the first deletion
    deleted: int = 0
    already_gone: int = 0
    not_deleted: int = 0  # the provider refused for now (retry later) or per-item errors
    jobs: int = 0  # async jobs started
    status: str = "verified"  # verified | awaiting_provider | assumed | incomplete | held
    complete_by: datetime | None = None  # awaiting_provider: the provider's own deadline; assumed: ours
    residual_copies_until: datetime | None = None  # the provider's backups and logs
    verification: str = ""
    # Keys of the spec's assumptions (undocumented provider facts) this resource's outcome rests on, and
    # whether the result's claim does rest on them: true when no documented read verified it afterwards.
    # Then status is "assumed" where it would have said verified or awaiting_provider.
    assumptions: list[str] = field(default_factory=list)
    assumed: bool = False

    def as_event(self) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in self.__dict__.items()}

    def summary(self) -> dict[str, Any]:
        """``as_event`` without the names every event of the erasure carries already."""
        return {k: v for k, v in self.as_event().items() if k not in ("subprocessor", "resource", "account_id")}


@dataclass
class Scope:
    """One provider-side tenant of the account (a subaccount, a subuser, a project) and its variables."""

    variables: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Job:
    """An async deletion job the provider is running: its id, its scope, and how many records the call
    that started it had accepted (counted as not deleted if the job fails)."""

    job_id: str
    scope: int  # index into Progress.scopes
    accepted: int


@dataclass
class Progress:
    """An erasure between rounds of async jobs: what it did so far and what it waits for."""

    result: ResourceResult
    scopes: list[Scope]
    jobs: list[Job] = field(default_factory=list)  # started, not finished
    draining: list[int] = field(default_factory=list)  # scopes whose capped search may hold more
    rounds: int = 0

    @property
    def done(self) -> bool:
        return not self.jobs and not self.draining

    def to_json(self) -> dict[str, Any]:
        return {"result": self.result.as_event(), "scopes": [s.__dict__ for s in self.scopes],
                "jobs": [j.__dict__ for j in self.jobs], "draining": self.draining, "rounds": self.rounds}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Progress:
        result = dict(data["result"])
        for name in ("complete_by", "residual_copies_until"):
            if result.get(name):
                result[name] = datetime.fromisoformat(result[name])
        return cls(ResourceResult(**result), [Scope(**s) for s in data["scopes"]],
                   [Job(**j) for j in data["jobs"]], list(data["draining"]), data["rounds"])
