"""One resource of a spec: where its records are found, how they are deleted, when that completes, how the
result is verified, and what the spec assumes about it."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, HttpUrl

from retention.rules.model import Duration, Identifier, Strict, Text
from retention.subprocessors.spec.completion import Completion, Sync
from retention.subprocessors.spec.delete import Delete
from retention.subprocessors.spec.find import FanOut, Find
from retention.subprocessors.spec.request import Request
from retention.subprocessors.spec.subject import Export, SubjectScope


class GetAbsent(Strict):
    """A GET per id (``request`` names ``{id}``) must answer 404 or an already-deleted code."""

    kind: Literal["get_absent"]
    request: Request


class FindEmpty(Strict):
    """The find must come back empty."""

    kind: Literal["find_empty"]


class AfterCompletion(Strict):
    """Nothing is read back: the result stands once the provider's own delay has passed."""

    kind: Literal["after_completion"]


Verify = Annotated[GetAbsent | FindEmpty | AfterCompletion, Field(discriminator="kind")]


class Assumption(Strict):
    """A provider fact the spec relies on that the provider's documentation does not state.

    ``key`` is the only part that enters the ledger (short and fixed, no free text). ``bears_on``:
    ``outcome`` when what a result claims (that the data is gone, or by when) rests on it: such a
    result is recorded as ``assumed`` unless a documented read verified it afterwards; ``operation``
    when only the run's pacing or liveness does (a rate-limit header): if it is wrong the run waits
    longer or fails, and never claims more than it did."""

    key: Identifier
    fact: Text
    why: Text
    bears_on: Literal["outcome", "operation"] = "outcome"


class ProviderRetention(Strict):
    """How long the provider itself keeps residual copies (backups, logs) after an API deletion."""

    period: Duration
    source: Text  # where the provider says so


class Resource(Strict):
    data_class: Identifier
    description: Text
    # resources that must be erased first (items before their conversation)
    after: list[Identifier] = Field(default_factory=list)
    base_url: HttpUrl | None = None  # when this API lives on its own host (Twilio Conversations)
    fan_out: FanOut | None = None
    find: Find
    delete: Delete
    completion: Completion = Field(default_factory=lambda: Sync(kind="sync"))
    verify: Verify
    provider_retention: ProviderRetention | None = None
    max_records: int | None = Field(default=None, ge=1)  # refuse to delete when the previews find more
    # undocumented provider facts this resource rests on
    assumptions: list[Assumption] = Field(default_factory=list)
    subject: SubjectScope | None = None  # how one person's records are found (``spec.subject``)
    export: list[Export] = Field(default_factory=list)  # how what it holds is downloaded
