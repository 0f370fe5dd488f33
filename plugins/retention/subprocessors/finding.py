"""Finding one account's records: its provider-side tenants (a fan-out), then the ids in each."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from retention.rules.subjects import normalize
from retention.subprocessors.context import ResourceRun
from retention.subprocessors.errors import SubprocessorError
from retention.subprocessors.pagination import list_items
from retention.subprocessors.render import render
from retention.subprocessors.results import Scope
from retention.subprocessors.spec import ListedFanOut, ListedFind
from retention.subprocessors.spec.subject import SubjectFind
from retention.subprocessors.values import get


def scopes(run: ResourceRun, base: dict[str, Any]) -> Iterator[Scope]:
    """The account's tenants at the provider (one scope, the account itself, without a fan-out)."""
    fan_out = run.resource.fan_out
    if fan_out is None:
        yield Scope(dict(base))
        return
    items: Iterable[Any]
    if isinstance(fan_out, ListedFanOut):
        items = list_items(run.api, run.who, fan_out.request, fan_out.pagination, fan_out.items, Scope(dict(base)),
                           "fan_out")
    else:
        items = ({"id": i} for i in run.recorded(fan_out.recorded, base["account_id"]))
    for item in items:
        if not matches(item, fan_out.match, base):
            continue
        variables = dict(base)
        for name, path in fan_out.bind.items():
            value = get(item, path)
            if value in (None, ""):
                raise SubprocessorError(f"{run.who}: a fan-out item has no {path!r}")
            variables[name] = value
        yield Scope(variables, {h: render(t, variables) for h, t in fan_out.headers.items()})


def find_ids(run: ResourceRun, scope: Scope) -> list[str]:
    """The ids of the scope's records, each once, in the order found."""
    find = run.resource.find
    if not isinstance(find, ListedFind):
        return run.recorded(find.recorded, scope.variables["account_id"])
    ids = []
    for item in list_items(run.api, run.who, find.request, find.pagination, find.items, scope, "find"):
        if matches(item, find.match, scope.variables) and identifies(item, find, scope.variables):
            value = get(item, find.id)
            if value in (None, ""):
                raise SubprocessorError(f"{run.who}: a found item has no {find.id!r}")
            ids.append(str(value))
    return list(dict.fromkeys(ids))


def search_cap(run: ResourceRun) -> int | None:
    """How many records one search returns at most (a capped search is repeated), if the provider caps it."""
    return run.resource.find.cap if isinstance(run.resource.find, ListedFind) else None


def identifies(item: Any, find: ListedFind, variables: dict[str, Any]) -> bool:
    """A subject search's item holds the person's identifier (normalized as theirs is); any other find's
    items pass."""
    if not isinstance(find, SubjectFind):
        return True
    value = get(item, find.identifier)
    try:
        return isinstance(value, str) and normalize(find.by, value) == variables[find.by]
    except ValueError:  # not an identifier of that kind at all
        return False


def matches(item: Any, match: dict[str, str], variables: dict[str, Any]) -> bool:
    return all(str(get(item, path)) == render(template, variables) for path, template in match.items())
