"""One resource's erasure context: the spec, the resource, the client as that resource uses it, and where
events, holds and recorded ids come from. Made per resource by the ``Eraser``; nothing in it is shared
state another resource could change."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from retention.subprocessors.errors import SubprocessorError
from retention.subprocessors.http import ResourceClient
from retention.subprocessors.spec import ConnectorSpec, RecordedIds, Resource

Record = Callable[[str, dict[str, Any]], object]  # (event kind, payload); what it returns is ignored
Holds = Callable[[str, str], list[str]]  # (account id, data class) -> ids of the legal holds in force
RecordedIdsReader = Callable[[RecordedIds, str], list[str]]  # (where, account id) -> ids


class Held(Exception):
    """A legal hold covers what the next call would delete: the erasure stops where it is."""

    def __init__(self, holds: list[str]) -> None:
        super().__init__(", ".join(holds))
        self.holds = holds


@dataclass(frozen=True)
class ResourceRun:
    spec: ConnectorSpec
    name: str
    resource: Resource
    api: ResourceClient
    record: Record
    holds: Holds
    recorded_ids: RecordedIdsReader | None
    sleep: Callable[[float], None]
    now: Callable[[], datetime]

    @property
    def who(self) -> str:
        return self.spec.subprocessor

    def event(self, kind: str, account_id: str | None, **payload: Any) -> None:
        self.record(kind, {"subprocessor": self.spec.subprocessor, "resource": self.name,
                           **({"account_id": account_id} if account_id else {}), **payload})

    def check_holds(self, account_id: str) -> None:
        """Right before a destructive call: a hold placed since the last one stops this one."""
        holds = self.holds(account_id, self.resource.data_class)
        if holds:
            self.event("subprocessor.held", account_id, data_class=self.resource.data_class, holds=holds)
            raise Held(holds)

    def recorded(self, recorded: RecordedIds, account_id: str) -> list[str]:
        if self.recorded_ids is None:
            raise SubprocessorError(f"{self.who}: ids are recorded at creation, "
                                    "but no database was given to read them from")
        return [str(i) for i in self.recorded_ids(recorded, account_id)]
