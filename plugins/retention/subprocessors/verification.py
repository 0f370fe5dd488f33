"""Verification strategies, one per ``verify.kind`` of a resource, chosen from ``STRATEGIES`` by the kind:
how the erasure checks that what it deleted is gone, and what the result may claim after it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Generic, TypeVar

from retention.subprocessors.context import ResourceRun
from retention.subprocessors.finding import find_ids
from retention.subprocessors.results import ResourceResult, Scope
from retention.subprocessors.spec import AfterCompletion, FindEmpty, GetAbsent, Verify
from retention.subprocessors.values import code_in, get, json_of

V = TypeVar("V", GetAbsent, FindEmpty, AfterCompletion)
IdsByScope = list[tuple[Scope, list[str]]]


class Verifying(ABC, Generic[V]):
    config: V

    def __init__(self, config: V) -> None:
        self.config = config

    @abstractmethod
    def check(self, run: ResourceRun, result: ResourceResult, ids_by_scope: IdsByScope, acted: bool) -> None:
        """Set what the result claims after the deletes (``acted``: something was deleted or a job started)."""


class _ReadBack(Verifying[V]):
    def check(self, run: ResourceRun, result: ResourceResult, ids_by_scope: IdsByScope, acted: bool) -> None:
        """Read back what is left; a documented read that came back clean is what the result stands on, not
        the spec's assumptions (which the event still lists). One that found records left is incomplete,
        whatever was assumed."""
        left = self.left(run, ids_by_scope)
        result.verification = f"{self.config.kind}: {left} left"
        if left and result.status == "verified":
            result.status = "incomplete"
        result.assumed = False
        run.event("subprocessor.verified", result.account_id, method=self.config.kind, left=left)

    @abstractmethod
    def left(self, run: ResourceRun, ids_by_scope: IdsByScope) -> int:
        """How many of the account's records the provider still returns."""


class FindAgain(_ReadBack[FindEmpty]):
    def left(self, run: ResourceRun, ids_by_scope: IdsByScope) -> int:
        return sum(len(find_ids(run, scope)) for scope, _ in ids_by_scope)


class GetEach(_ReadBack[GetAbsent]):
    def left(self, run: ResourceRun, ids_by_scope: IdsByScope) -> int:
        delete, left = run.resource.delete, 0
        for scope, ids in ids_by_scope:
            for record_id in ids:
                response = run.api.call(self.config.request, {**scope.variables, "id": record_id},
                                        operation="verify", extra_headers=scope.headers)
                code = get(json_of(response), delete.error_code)
                gone = response.status_code in delete.already_deleted.statuses or \
                    code_in(code, delete.already_deleted.codes)
                left += 0 if gone else 1
        return left


class AfterProviderDelay(Verifying[AfterCompletion]):
    def check(self, run: ResourceRun, result: ResourceResult, ids_by_scope: IdsByScope, acted: bool) -> None:
        """Nothing reads the outcome back: where the completion rests on an assumption, so does the claim."""
        result.assumed = acted and bool(result.assumptions)
        by = "we assume it completes" if result.assumed else "the provider completes"
        result.verification = (f"after_completion: {by} by {result.complete_by:%Y-%m-%d}"
                               if result.complete_by else "after_completion: nothing was found to delete")
        if result.assumed and result.status in ("verified", "awaiting_provider"):
            result.status = "assumed"


# The strategy for each verify kind (the tag pydantic chose the config's model by).
STRATEGIES: dict[str, type[Verifying[Any]]] = {
    "get_absent": GetEach,
    "find_empty": FindAgain,
    "after_completion": AfterProviderDelay,
}


def verifying(config: Verify) -> Verifying[Any]:
    return STRATEGIES[config.kind](config)
