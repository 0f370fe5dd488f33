"""One person's records at a subprocessor: preview (count), erase, export; and an account's export for the
termination return package.

A resource's ``subject`` section (``retention.subprocessors.spec.subject``) says how the provider finds one
person's records inside the account's tenant: each search by one identifier kind, run once per value of the
person's of that kind. Erasure runs the generic executor (``Eraser``) with the search in place of the
resource's account-wide find, so everything it guarantees holds for one person too: the credentials
pre-flight, ``max_records``, every found id checked before the first delete, the legal holds asked right
before each delete call, intent and outcome events, async jobs, and verification (the search again, or a
GET per id). Identifiers never enter an event, a log line or an error: the provider calls are recorded by
their templates, ids only as digests, and the closing ``subject.subprocessor`` event carries counts.

A spec's subject scope (``SubjectMatch.scope``): ``api`` when a resource of it can search by identifier;
``manual`` when the provider holds people's data but offers no such search (a person files the request, and
the certificate lists it pending their attestation); ``none`` when the spec holds no personal data class, or
is ``hosted`` (the inventory's own locations hold, and erase, those rows). Resources of an ``api`` spec
without a search are named ``unsupported`` in the result and the event.

An identifier goes into a provider's query language as a quoted literal (SOQL, SendGrid's SGQL), so a value
holding a quote or a backslash is refused before anything is sent: it could read as syntax and widen the
search beyond the person and the tenant.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from retention.ledger import Ledger
from retention.rules.loader import load_ruleset
from retention.rules.model import DataClassesFile
from retention.rules.subjects import Subject
from retention.settings import Settings
from retention.subprocessors import eraser, recorded_ids_from_airflow
from retention.subprocessors.connection import Credentials
from retention.subprocessors.context import RecordedIdsReader, ResourceRun
from retention.subprocessors.errors import SubprocessorError
from retention.subprocessors.finding import identifies, matches, scopes
from retention.subprocessors.http import Client
from retention.subprocessors.pagination import list_items
from retention.subprocessors.results import ResourceResult, Scope
from retention.subprocessors.spec import ConnectorSpec, ListedFind, Request, Resource, load_spec
from retention.subprocessors.spec.subject import DownloadExport, Export, GetExport, ItemsExport, SubjectFind
from retention.subprocessors.values import get

SubjectScope = Literal["api", "manual", "none"]
Outcome = Literal["erased", "nothing_found", "held", "incomplete", "manual", "unsupported"]

_SPEC_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_LITERAL_BREAKERS = frozenset("'\"\\")
_FILE_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


@dataclass(frozen=True)
class SubjectMatch:
    subprocessor: str
    scope: SubjectScope
    matched: int | None  # api: the person's records found; manual and none: None


@dataclass(frozen=True)
class Exported:
    files: list[Path]
    records: int
    # Resources whose find answered as many items as its ``cap`` (a search without paging, such as SendGrid's
    # contact search at 50): the provider may hold more than the export could list, so the export is incomplete.
    truncated: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Listed:
    """One record found for an export: its tenant scope, its id, and the item as listed (None: recorded)."""

    scope: Scope
    record_id: str
    item: Any


def preview(spec_name: str, account_id: str, subject: Subject) -> SubjectMatch:
    """How many of the person's records the provider holds in the account's tenant; nothing is deleted."""
    spec, classes = _load(spec_name)
    scope = _reach(spec, classes, subject)
    if scope != "api":
        return SubjectMatch(spec.subprocessor, scope, None)
    found = 0
    with _client(spec) as client:
        for search in _searchable(spec, subject):
            found += len({listed.record_id for listed in _subject_records(spec, client, search, account_id, subject)})
    return SubjectMatch(spec.subprocessor, "api", found)


def erase(ledger: Ledger, request_id: str, spec_name: str, account_id: str, subject: Subject, *, run_id: str,
          actor: str) -> dict[str, Any]:
    """Delete the person's records at the provider, resource by resource and search by search, through the
    executor; then the ``subject.subprocessor`` event, in ``run_id`` (the request's ledger run: its preview's),
    where closing the request and its certificate read it. A hold on a resource's data class of the account stops
    the whole provider before its first delete (outcome ``held``); one placed meanwhile stops the next call
    and every search after it."""
    spec, classes = _load(spec_name)
    scope = _reach(spec, classes, subject)
    searchable = _searchable(spec, subject) if scope == "api" else []
    unsupported = sorted(set(spec.resources) - {search.name for search in searchable})
    if scope != "api":
        return _close(ledger, request_id, run_id, spec, "manual" if scope == "manual" else "unsupported", 0, {},
                      unsupported, actor)
    if any(ledger.holds_in_force(account_id, search.resource.data_class) for search in searchable):
        return _close(ledger, request_id, run_id, spec, "held", 0, {}, unsupported, actor)
    results: dict[str, list[ResourceResult]] = {}
    for search in searchable:
        for find, variables in _searches(search, subject):
            aimed = search.resource.model_copy(update={"find": find})
            one = spec.model_copy(update={"resources": {search.name: aimed}})
            with eraser(one, search.name, account_id, ledger=ledger, actor=actor) as running:
                result = running.erase(search.name, account_id, variables=variables)
            results.setdefault(search.name, []).append(result)
            if result.status == "held":
                break
        if any(r.status == "held" for r in results.get(search.name, [])):
            break
    statuses = {name: _worst([r.status for r in rs]) for name, rs in results.items()}
    count = sum(r.deleted + r.already_gone for rs in results.values() for r in rs)
    found = sum(r.found for rs in results.values() for r in rs)
    outcome: Outcome = ("held" if "held" in statuses.values() else
                        "incomplete" if "incomplete" in statuses.values() else
                        "erased" if found else "nothing_found")
    return _close(ledger, request_id, run_id, spec, outcome, count, statuses, unsupported, actor)


def export(spec_name: str, account_id: str, subject: Subject, directory: Path) -> Exported:
    """What the provider holds of the person in the account's tenant, under ``directory/<subprocessor>/``."""
    spec, classes = _load(spec_name)
    if _reach(spec, classes, subject) != "api":
        return Exported([], 0)
    files: list[Path] = []
    records = 0
    with _client(spec) as client:
        for search in _searchable(spec, subject):
            found = {r.record_id: r for r in _subject_records(spec, client, search, account_id, subject)}
            run = _run(spec, client, search.name, search.resource)
            written, count = _write(run, search.resource.export, list(found.values()),
                                    directory / spec.subprocessor)
            files += written
            records += count
    return Exported(files, records)


def export_account(spec_name: str, account_id: str, directory: Path, *,
                   recorded_ids: RecordedIdsReader = recorded_ids_from_airflow) -> Exported:
    """Everything the provider holds for the account, by each resource's account find and its ``export``
    (the termination return package), under ``directory/<subprocessor>/``. ``recorded_ids``: where ids the
    application recorded at creation are read (its database, through the spec's Connection)."""
    spec, _ = _load(spec_name)
    files: list[Path] = []
    records = 0
    truncated: list[str] = []
    if not spec.resources:
        return Exported([], 0)
    with _client(spec) as client:
        for name, resource in spec.resources.items():
            if not resource.export:
                continue
            run = _run(spec, client, name, resource, recorded_ids)
            found: list[_Listed] = []
            cap = resource.find.cap if isinstance(resource.find, ListedFind) else None
            for scope in scopes(run, {"account_id": account_id}):
                listed = [_Listed(scope, record_id, item) for record_id, item in _account_records(run, scope)]
                if cap is not None and len(listed) >= cap and name not in truncated:
                    truncated.append(name)
                found += listed
            written, count = _write(run, resource.export, found, directory / spec.subprocessor)
            files += written
            records += count
    return Exported(files, records, tuple(truncated))


def scope_of(spec: ConnectorSpec, classes: DataClassesFile) -> SubjectScope:
    """``none``: hosted, or no personal data class; ``api``: a resource searches by identifier; else manual."""
    named = [spec.manual.data_class] if spec.manual else [r.data_class for r in spec.resources.values()]
    personal = any(classes.data_classes[c].personal_data for c in named if c in classes.data_classes)
    if spec.hosted is not None or not personal:
        return "none"
    return "api" if any(r.subject is not None for r in spec.resources.values()) else "manual"


# -- searching ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Search:
    """A resource and those of its subject searches whose identifier kind the person has."""

    name: str
    resource: Resource
    finds: list[SubjectFind]


def _reach(spec: ConnectorSpec, classes: DataClassesFile, subject: Subject) -> SubjectScope:
    """The spec's scope for this person: ``api`` only where a search takes one of their identifier kinds
    (a provider that finds people by phone cannot be asked about someone known only by e-mail: a person
    must look). Identifiers a query language could read as syntax are refused here, before anything is sent."""
    scope = scope_of(spec, classes)
    if scope != "api":
        return scope
    searchable = _searchable(spec, subject)
    for search in searchable:
        for find in search.finds:
            if any(_LITERAL_BREAKERS & set(value) for value in subject.values(find.by)):
                raise SubprocessorError(f"a {find.by} identifier holds a quote or backslash, which a provider's "
                                        "query language could read as syntax; nothing was sent")
    return "api" if searchable else "manual"


def _searchable(spec: ConnectorSpec, subject: Subject) -> list[_Search]:
    kinds = subject.kinds()
    found = [_Search(name, r, [f for f in r.subject.find if f.by in kinds])
             for name, r in spec.resources.items() if r.subject is not None]
    return [search for search in found if search.finds]


def _searches(search: _Search, subject: Subject) -> Iterator[tuple[SubjectFind, dict[str, str]]]:
    """Each search of the resource with each of the person's values of its kind."""
    for find in search.finds:
        for value in subject.values(find.by):
            yield find, {find.by: value}


def _subject_records(spec: ConnectorSpec, client: Client, search: _Search, account_id: str,
                     subject: Subject) -> Iterator[_Listed]:
    for find, variables in _searches(search, subject):
        run = _run(spec, client, search.name, search.resource.model_copy(update={"find": find}))
        for scope in scopes(run, {**variables, "account_id": account_id}):
            yield from (_Listed(scope, i, item) for i, item in _listed(run, find, scope))


def _account_records(run: ResourceRun, scope: Scope) -> Iterator[tuple[str, Any]]:
    find = run.resource.find
    if isinstance(find, ListedFind):
        yield from _listed(run, find, scope)
        return
    yield from ((i, None) for i in run.recorded(find.recorded, scope.variables["account_id"]))


def _listed(run: ResourceRun, find: ListedFind, scope: Scope) -> Iterator[tuple[str, Any]]:
    for item in list_items(run.api, run.who, find.request, find.pagination, find.items, scope, "find"):
        if matches(item, find.match, scope.variables) and identifies(item, find, scope.variables):
            value = get(item, find.id)
            if value in (None, ""):
                raise SubprocessorError(f"{run.who}/{run.name}: a found item has no {find.id!r}")
            yield str(value), item


# -- exporting: a strategy per export kind ------------------------------------------------------------


@dataclass
class _Written:
    rows: list[Any]  # records, written together as <resource>.json
    files: list[Path]  # files downloaded as they are


def _export_items(run: ResourceRun, spec: ItemsExport, found: list[_Listed], into: Path, out: _Written) -> None:
    out.rows += [listed.item for listed in found]


def _export_get(run: ResourceRun, spec: GetExport, found: list[_Listed], into: Path, out: _Written) -> None:
    for listed in found:
        body = _fetch(run, spec.request, listed, "export_get")
        if body is not None:
            out.rows.append(json.loads(body))


def _export_download(run: ResourceRun, spec: DownloadExport, found: list[_Listed], into: Path,
                     out: _Written) -> None:
    for listed in found:
        body = _fetch(run, spec.request, listed, "export_download")
        if body is not None:
            path = into / run.name / f"{_file_id(listed.record_id)}{spec.suffix}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(body)
            out.files.append(path)


# The strategy for each export kind (the tag pydantic chose the export's model by).
EXPORTERS: dict[str, Callable[[ResourceRun, Any, list[_Listed], Path, _Written], None]] = {
    "items": _export_items,
    "get": _export_get,
    "download": _export_download,
}


def _write(run: ResourceRun, exports: list[Export], found: list[_Listed], into: Path) -> tuple[list[Path], int]:
    """Each export of the resource over the records found: records (items, or a JSON GET per id) in
    ``<resource>.json``; downloads as ``<resource>/<id><suffix>``. Returns the files and the record count."""
    out = _Written([], [])
    for spec in exports:
        EXPORTERS[spec.kind](run, spec, found, into, out)
    if out.rows:
        into.mkdir(parents=True, exist_ok=True)
        path = into / f"{run.name}.json"
        path.write_text(json.dumps(out.rows, indent=1, sort_keys=True, default=str))
        out.files.append(path)
    return out.files, len(out.rows)


def _fetch(run: ResourceRun, request: Request, listed: _Listed, operation: str) -> bytes | None:
    """One record's body; None when the provider no longer has it (404)."""
    response = run.api.call(request, {**listed.scope.variables, "id": listed.record_id}, operation=operation,
                            extra_headers=listed.scope.headers)
    if response.status_code == 404:
        return None
    if response.status_code != 200:
        raise SubprocessorError(f"{run.who}/{run.name}: {operation} answered HTTP {response.status_code}")
    return response.content


def _file_id(record_id: str) -> str:
    """A provider id as a file name; anything else (a path, an e-mail address) by its digest."""
    return record_id if _FILE_ID.match(record_id) else hashlib.sha256(record_id.encode()).hexdigest()[:32]


# -- plumbing -----------------------------------------------------------------------------------------


def _load(spec_name: str) -> tuple[ConnectorSpec, DataClassesFile]:
    if not _SPEC_NAME.match(spec_name):
        raise SubprocessorError(f"{spec_name!r} is not a subprocessor name")
    rules = Settings.from_env().rules_dir
    classes = load_ruleset(rules).data_classes
    path = rules / "subprocessors" / f"{spec_name}.yaml"
    if not path.is_file():
        raise SubprocessorError(f"no connector spec for {spec_name!r}")
    return load_spec(path, subprocessors=set(classes.subprocessors), data_classes=set(classes.data_classes)), classes


def _client(spec: ConnectorSpec) -> Client:
    return Client(spec, Credentials.from_connection(spec))


def _run(spec: ConnectorSpec, client: Client, name: str, resource: Resource,
         recorded_ids: RecordedIdsReader = recorded_ids_from_airflow) -> ResourceRun:
    """A read-only context: nothing is recorded, and asking it for holds is a defect (it never deletes)."""
    def never_deletes(account_id: str, data_class: str) -> list[str]:
        raise SubprocessorError("a read-only subject context was asked to delete")

    api = client.for_resource(name, str(resource.base_url) if resource.base_url else None)
    return ResourceRun(spec, name, resource, api, lambda kind, payload: None, never_deletes,
                       recorded_ids, time.sleep, lambda: datetime.now(UTC))


_STATUS_ORDER = ("held", "incomplete", "awaiting_provider", "assumed", "verified")


def _worst(statuses: list[str]) -> str:
    return min(statuses, key=lambda s: _STATUS_ORDER.index(s) if s in _STATUS_ORDER else 0)


def _close(ledger: Ledger, request_id: str, run_id: str, spec: ConnectorSpec, outcome: Outcome, count: int,
           statuses: dict[str, str], unsupported: list[str], actor: str) -> dict[str, Any]:
    payload: dict[str, Any] = {"request_id": request_id, "subprocessor": spec.subprocessor, "outcome": outcome,
                               "count": count}
    if statuses:
        payload["resources"] = statuses
    if unsupported and spec.resources:
        payload["unsupported"] = unsupported
    ledger.append("subject.subprocessor", payload, actor=actor, run_id=run_id)
    return payload
