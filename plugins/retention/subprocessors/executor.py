"""Run one resource of a connector spec for one account: find, preview, delete, complete, verify.

Every HTTP call becomes a ``subprocessor.call`` event; every destructive call is framed by
``subprocessor.intent`` (how many, which ids as a sha256) and ``subprocessor.outcome``. Ids, e-mail
addresses and other values the provider keys records by never enter an event, only their digest.

What "done" means is per spec: ``verified`` (the verification came back clean), ``awaiting_provider``
(an accepted deletion the provider completes later, with the date by which it says it will),
``incomplete`` (records the provider would not delete yet, e.g. Twilio's 20009; run again later),
``assumed`` (accepted, and complete only by an assumption of the spec's, e.g. SendGrid's erase job: no
read checked it; ``assumed: true`` and the assumption keys go with it), or ``held`` (a legal hold
covers the resource's data class of the account: nothing more is sent).

Before the first delete call, every id found passes the path-value rule (``render``), and the previews'
running total, over every round of a capped search, stays within ``max_records``; otherwise the run
stops with a SubprocessorError, deleting nothing more.

Before anything else, ``begin`` sends the spec's ``test_request`` (a read-only GET): an answer other than
the expected status (a 401 or 403: wrong or revoked credentials) ends the run before its first delete,
recorded as ``subprocessor.preflight_failed`` (the status and the statuses expected; no body). Next-page links are followed only to
the base URL's origin (``retention.subprocessors.http``); a refused link ends the find, so no deletion
proceeds on what it listed.

Legal holds are asked for right before every destructive call (``holds(account_id, data_class)``, the
ledger's ``holds_in_force``), so a hold placed between two calls stops the next one; the stop is
recorded as ``subprocessor.held`` with the holds' ids.

Async jobs (``completion: async_job``) are not waited for here: ``begin`` returns a ``Progress`` with
the jobs it started, and ``resume`` takes their final states and goes on (the next round of a capped
search, then verification). The DAG waits in a deferrable trigger (``retention.subprocessors.trigger``);
``erase`` polls inline, in one process. A ``Progress`` is JSON: it carries scopes (tenant
variables such as a subuser name), job ids and counts, never the ids of the records being deleted.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pendulum

from retention.subprocessors.http import Client, SubprocessorError, render
from retention.subprocessors.spec import (
    AsyncJob,
    AsyncUnpollable,
    ConnectorSpec,
    Delete,
    Pagination,
    Request,
    Resource,
    SoftDelete,
    outcome_assumptions,
)

Record = Callable[[str, dict], None]
Holds = Callable[[str, str], list[str]]  # (account id, data class) -> ids of the legal holds in force
MAX_PAGES = 100_000  # a listing that never ends is a provider bug, not a reason to loop forever
MAX_ROUNDS = 50  # capped searches are repeated after each deletion round, at most this often


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

    def as_event(self) -> dict:
        return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in self.__dict__.items()}


@dataclass
class _Scope:
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
    scopes: list[_Scope]
    jobs: list[Job] = field(default_factory=list)  # started, not finished
    draining: list[int] = field(default_factory=list)  # scopes whose capped search may hold more
    rounds: int = 0

    @property
    def done(self) -> bool:
        return not self.jobs and not self.draining

    def to_json(self) -> dict:
        return {"result": self.result.as_event(), "scopes": [s.__dict__ for s in self.scopes],
                "jobs": [j.__dict__ for j in self.jobs], "draining": self.draining, "rounds": self.rounds}

    @classmethod
    def from_json(cls, data: dict) -> Progress:
        result = dict(data["result"])
        for name in ("complete_by", "residual_copies_until"):
            if result.get(name):
                result[name] = datetime.fromisoformat(result[name])
        return cls(ResourceResult(**result), [_Scope(**s) for s in data["scopes"]],
                   [Job(**j) for j in data["jobs"]], list(data["draining"]), data["rounds"])


class _Held(Exception):
    """A legal hold covers what the next call would delete: the erasure stops where it is."""

    def __init__(self, holds: list[str]) -> None:
        super().__init__(", ".join(holds))
        self.holds = holds


def polls_only(account_id: str, data_class: str) -> list[str]:
    """``holds`` for an Eraser that only polls jobs (the trigger): it must never reach a delete."""
    raise SubprocessorError("this eraser only polls jobs; it was asked to delete")


class Eraser:
    """Erase one account's data held by one subprocessor, resource by resource."""

    def __init__(self, spec: ConnectorSpec, client: Client, record: Record, *, holds: Holds,
                 recorded_ids: Callable[[Any, str], list[str]] | None = None,
                 sleep: Callable[[float], None] = time.sleep, now: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.spec = spec
        self.client = client
        self._record = record
        self._holds = holds
        self._recorded_ids = recorded_ids
        self._sleep = sleep
        self._now = now
        self._base_url: str | None = None  # the resource's own host (Twilio Conversations), if any
        self._resource_name: str | None = None  # named in the client's errors

    def erase(self, resource_name: str, account_id: str, *, cutoff: datetime | None = None) -> ResourceResult:
        """Delete every record of the account (older than ``cutoff`` where the API can filter by time),
        waiting for async jobs in this process."""
        progress = self.begin(resource_name, account_id, cutoff=cutoff)
        while not progress.done:
            progress = self.resume(progress, self.wait_for(progress))
        return progress.result

    def begin(self, resource_name: str, account_id: str, *, cutoff: datetime | None = None) -> Progress:
        """Find, preview and delete; finished unless async jobs were started (``progress.jobs``)."""
        resource = self._resource(resource_name)
        self._preflight(resource_name, account_id)
        result = ResourceResult(self.spec.subprocessor, resource_name, resource.data_class, account_id,
                                assumptions=outcome_assumptions(self.spec, resource_name))
        at = cutoff or self._now()  # query-scope deletes take everything up to the cutoff (or now)
        base = {"account_id": account_id, "cutoff": at.isoformat(), "cutoff_ms": int(at.timestamp() * 1000)}
        ids_by_scope: list[tuple[_Scope, list[str]]] = []
        for scope in self._scopes(resource, base):
            ids = self._find_ids(resource, scope)
            ids_by_scope.append((scope, ids))
            result.found += len(ids)
        self._event("subprocessor.preview", resource_name, account_id, found=result.found,
                    scopes=len(ids_by_scope))
        self._check_bound(resource, result, "nothing was deleted")
        for scope, ids in ids_by_scope:  # every id, before the first delete: a bad one stops them all
            self._check_ids(resource, resource_name, scope, ids)
        progress = Progress(result, [scope for scope, _ in ids_by_scope])
        try:
            for index, (scope, ids) in enumerate(ids_by_scope):
                self._delete_scope(resource, progress, index, ids)
        except _Held as held:
            return self._stopped(progress, held.holds)
        if progress.done:
            self._finish(resource, progress, ids_by_scope)
        return progress

    def resume(self, progress: Progress, states: dict[str, str]) -> Progress:
        """Take the final state of each job (``done`` or ``failed``), then search the capped scopes
        again; finished unless that started new jobs."""
        result = progress.result
        resource = self._resource(result.resource)
        for job in progress.jobs:
            state = states[job.job_id]
            self._event("subprocessor.job_finished", result.resource, result.account_id,
                        job_sha256=_digest([job.job_id]), state=state)
            if state != "done":  # the provider accepted the ids but did not delete them
                result.deleted -= job.accepted
                result.not_deleted += job.accepted
        progress.jobs = []
        draining, progress.draining = progress.draining, []
        try:
            for index in draining:
                self._delete_scope(resource, progress, index, self._search_again(resource, progress, index))
        except _Held as held:
            return self._stopped(progress, held.holds)
        if progress.done:
            # Only find_empty and after_completion verify async jobs (the spec loader sees to it), and
            # neither needs the ids, which a Progress does not carry.
            self._finish(resource, progress, [(scope, []) for scope in progress.scopes])
        return progress

    def wait_for(self, progress: Progress) -> dict[str, str]:
        """Poll every job of ``progress`` to a final state, sleeping in this process."""
        completion = self._resource(progress.result.resource).completion
        deadline = time.monotonic() + completion.max_wait.nominal_seconds
        states: dict[str, str] = {}
        while not self.poll_jobs(progress, states):
            if time.monotonic() > deadline:
                raise SubprocessorError(f"{self.spec.subprocessor}: job not finished within {completion.max_wait}")
            self._sleep(completion.poll_every.nominal_seconds)
        return states

    def poll_jobs(self, progress: Progress, states: dict[str, str]) -> bool:
        """Ask once for each job not yet final, adding final ones to ``states``; True when all are."""
        completion = self._resource(progress.result.resource).completion
        for job in progress.jobs:
            if job.job_id not in states:
                state = self.job_state(completion, job.job_id, progress.scopes[job.scope])
                if state is not None:
                    states[job.job_id] = state
        return all(job.job_id in states for job in progress.jobs)

    def job_state(self, job: AsyncJob, job_id: str, scope: _Scope) -> str | None:
        """One status call (or one listing of jobs): ``done``, ``failed``, or None while the job runs."""
        variables = {**scope.variables, "job_id": job_id}
        if job.items is not None:  # the provider lists jobs (Datadog): ours is the item with our id
            found = next((item for item in self._items(job.status, job.pagination, job.items, _Scope(
                variables, scope.headers), "job_status") if str(_get(item, job.item_id)) == job_id), None)
            if found is None:
                return None  # not listed (yet): still running as far as we can tell
            state = str(_get(found, job.status_field))
        else:
            response = self._call(job.status, variables, operation="job_status", extra_headers=scope.headers)
            if not response.is_success:
                raise SubprocessorError(f"{self.spec.subprocessor}: job status answered HTTP {response.status_code}")
            state = str(_get(_json(response), job.status_field))
        if state in job.done:
            return "done"
        return "failed" if state in job.failed else None

    def _preflight(self, name: str, account_id: str) -> None:
        """The spec's ``test_request``, before anything else of the run: credentials the provider refuses (or
        a wrong host) fail the run here, before its first delete, and ``subprocessor.preflight_failed``
        records the answer's status (no body, no credential). A pre-flight that gets no answer at all fails
        the run too, with the client's error; its ``subprocessor.call`` events say why."""
        test = self.spec.test_request
        if test is None:  # the loader requires one of every API spec; a spec built in code may lack it
            raise SubprocessorError(f"{self.spec.subprocessor}: the spec has no test_request; nothing was sent")
        # The account id goes along (the request names none) so that the client's account-id rule refuses a
        # bad one before even this read is sent.
        status = self.client.call(test, {"account_id": account_id}, operation="preflight", resource=name).status_code
        if status not in test.expect:
            self._event("subprocessor.preflight_failed", name, account_id, status=status, expected=list(test.expect))
            refused = " (the credentials were refused)" if status in (401, 403) else ""
            raise SubprocessorError(f"{self.spec.subprocessor}: pre-flight test_request GET {test.path} answered "
                                    f"HTTP {status}{refused}, expected {', '.join(map(str, test.expect))}; "
                                    f"nothing was deleted (Connection {self.spec.conn_id})")

    def _check_bound(self, resource: Resource, result: ResourceResult, done_so_far: str) -> None:
        """``max_records`` bounds every record the previews found, all rounds of a capped search together:
        a search capped at 50 never finds more than 50 at once, so the first preview alone would never
        trip it."""
        if resource.max_records is not None and result.found > resource.max_records:
            raise SubprocessorError(f"{self.spec.subprocessor}/{result.resource}: account {result.account_id} has "
                                    f"at least {result.found} matching records, more than max_records "
                                    f"({resource.max_records}); {done_so_far}, nothing more is deleted")

    def _check_ids(self, resource: Resource, name: str, scope: _Scope, ids: list[str]) -> None:
        """Every id found, through the same rule as ``render`` (never empty, no ``.`` or ``..`` in a path),
        before the first delete call: checked call by call, the ids before a bad one would already be
        deleted when it is refused."""
        requests = [resource.delete.request]
        if isinstance(resource.completion, SoftDelete) and resource.completion.purge is not None:
            requests.append(resource.completion.purge.request)
        if resource.verify.request is not None:
            requests.append(resource.verify.request)
        for record_id in ids:
            variables = {**scope.variables, "id": record_id, "ids": [record_id], "found": len(ids)}
            try:
                for request in requests:
                    render(request.path, variables, in_path=True)
                    for template in request.query.values():
                        render(str(template), variables)
            except SubprocessorError as exc:
                raise SubprocessorError(f"{self.spec.subprocessor}/{name}: a found id was refused before "
                                        f"any deletion: {exc}") from None

    def _check_holds(self, account_id: str, data_class: str, name: str) -> None:
        holds = self._holds(account_id, data_class)
        if holds:
            self._event("subprocessor.held", name, account_id, data_class=data_class, holds=holds)
            raise _Held(holds)

    def _stopped(self, progress: Progress, holds: list[str]) -> Progress:
        """A hold stopped the erasure: no more calls, no verification (what is left is kept, not residue)."""
        progress.result.status = "held"
        progress.jobs, progress.draining = [], []
        summary = {k: v for k, v in progress.result.as_event().items()
                   if k not in ("subprocessor", "resource", "account_id")}
        self._event("subprocessor.result", progress.result.resource, progress.result.account_id, holds=holds,
                    **summary)
        return progress

    def _resource(self, name: str) -> Resource:
        resource = self.spec.resources[name]
        self._base_url = str(resource.base_url) if resource.base_url else None
        self._resource_name = name
        return resource

    def _finish(self, resource: Resource, progress: Progress, ids_by_scope: list[tuple[_Scope, list[str]]]) -> None:
        result = progress.result
        self._complete_and_verify(resource, result.resource, ids_by_scope, result)
        if resource.provider_retention is not None:
            result.residual_copies_until = _add(self._now(), resource.provider_retention.period)
        summary = {k: v for k, v in result.as_event().items() if k not in ("subprocessor", "resource", "account_id")}
        self._event("subprocessor.result", result.resource, result.account_id, **summary)

    # -- scopes and finding ------------------------------------------------------------------------

    def _scopes(self, resource: Resource, base: dict[str, Any]) -> Iterator[_Scope]:
        fan_out = resource.fan_out
        if fan_out is None:
            yield _Scope(dict(base))
            return
        if fan_out.recorded is not None:
            items: Any = ({"id": i} for i in self._recorded(fan_out.recorded, base["account_id"]))
        else:
            items = self._items(fan_out.request, fan_out.pagination, fan_out.items, _Scope(dict(base)), "fan_out")
        for item in items:
            if not _matches(item, fan_out.match, base):
                continue
            variables = dict(base)
            for name, path in fan_out.bind.items():
                value = _get(item, path)
                if value in (None, ""):
                    raise SubprocessorError(f"{self.spec.subprocessor}: a fan-out item has no {path!r}")
                variables[name] = value
            yield _Scope(variables, {h: render(t, variables) for h, t in fan_out.headers.items()})

    def _recorded(self, recorded: Any, account_id: str) -> list[str]:
        if self._recorded_ids is None:
            raise SubprocessorError(f"{self.spec.subprocessor}: ids are recorded at creation, "
                                    "but no database was given to read them from")
        return [str(i) for i in self._recorded_ids(recorded, account_id)]

    def _find_ids(self, resource: Resource, scope: _Scope) -> list[str]:
        find = resource.find
        if find.recorded is not None:
            return self._recorded(find.recorded, scope.variables["account_id"])
        ids = []
        for item in self._items(find.request, find.pagination, find.items, scope, "find"):
            if _matches(item, find.match, scope.variables):
                value = _get(item, find.id)
                if value in (None, ""):
                    raise SubprocessorError(f"{self.spec.subprocessor}: a found item has no {find.id!r}")
                ids.append(str(value))
        return list(dict.fromkeys(ids))

    def _items(self, request: Request, pagination: Pagination, items_path: str, scope: _Scope,
               operation: str) -> Iterator[dict]:
        """Every item of a paginated listing."""
        url: str | None = None
        link_from = ""
        extra_query: dict[str, Any] = {}
        extra_headers: dict[str, str] = {}
        offset = 0
        for _ in range(MAX_PAGES):
            if pagination.style == "offset":
                extra_query = {pagination.offset_param: offset, pagination.limit_param: pagination.page_size}
            response = self._call(request, scope.variables, operation=operation, url=url, link_from=link_from,
                                  query=extra_query, extra_headers={**scope.headers, **extra_headers})
            if response.status_code not in (200, 206):
                raise SubprocessorError(f"{self.spec.subprocessor}: {operation} answered HTTP {response.status_code}")
            body = response.json() if response.content else None
            page = _get(body, items_path) if items_path else body
            page = page or []
            if not isinstance(page, list):
                raise SubprocessorError(f"{self.spec.subprocessor}: {operation}: {items_path!r} is not a list")
            yield from page
            style = pagination.style
            if style == "none":
                return
            if style == "link_header":
                url = _next_link(response, pagination.results_attribute)
                link_from = "the Link header's rel=\"next\""
            elif style == "next_url":
                url = _get(body, pagination.field) or None
                link_from = f"the body field {pagination.field!r}"
            elif style == "cursor":
                token = _get(body, pagination.token_field)
                more = bool(_get(body, pagination.more_field)) if pagination.more_field else token not in (None, "")
                if not more or token in (None, ""):
                    return
                if pagination.send_in == "query":
                    extra_query = {pagination.param: token}
                else:
                    request = request.model_copy(update={"body": _with(request.body, pagination.param, token)})
                continue
            elif style == "offset":
                if len(page) < pagination.page_size:
                    return
                offset += len(page)
                continue
            elif style == "range_header":
                next_range = response.headers.get("Next-Range")
                if response.status_code != 206 or not next_range:
                    return
                extra_headers = {"Range": next_range}
                continue
            if not url:
                return
            if not isinstance(url, str):
                raise SubprocessorError(f"{self.spec.subprocessor}: {operation}: {link_from} is not a URL")
            url = str(response.request.url.join(url))  # relative to the page that carried it (RFC 3986)
        raise SubprocessorError(f"{self.spec.subprocessor}: {operation} did not end after {MAX_PAGES} pages")

    # -- deleting ----------------------------------------------------------------------------------

    def _delete_scope(self, resource: Resource, progress: Progress, index: int, ids: list[str]) -> None:
        if resource.delete.scope in ("tenant", "query"):
            if ids:  # one call for the whole tenant or query; the preview found something to delete
                self._delete_call(resource.delete, progress, index, [], resource=resource, count=len(ids))
            return
        while True:
            for chunk in _chunks(ids, resource.delete.batch):
                self._delete_call(resource.delete, progress, index, chunk, resource=resource)
            if not (resource.find.cap and len(ids) >= resource.find.cap):
                return  # the search was not capped: it found everything
            if any(job.scope == index for job in progress.jobs):
                progress.draining.append(index)  # the records go when the jobs end: search again then
                return
            ids = self._search_again(resource, progress, index)

    def _search_again(self, resource: Resource, progress: Progress, index: int) -> list[str]:
        """A search capped at N found N: there may be more."""
        progress.rounds += 1
        if progress.rounds > MAX_ROUNDS:
            raise SubprocessorError(f"{self.spec.subprocessor}/{progress.result.resource}: still finding "
                                    f"records after {MAX_ROUNDS} rounds")
        ids = self._find_ids(resource, progress.scopes[index])
        progress.result.found += len(ids)
        self._event("subprocessor.preview", progress.result.resource, progress.result.account_id,
                    found=len(ids), round=True)
        self._check_bound(resource, progress.result, f"{progress.result.deleted} were deleted in earlier rounds")
        self._check_ids(resource, progress.result.resource, progress.scopes[index], ids)
        return ids

    def _delete_call(self, delete: Delete, progress: Progress, index: int, ids: list[str], *,
                     resource: Resource, count: int | None = None, purge: bool = False) -> None:
        """One aimed delete (retried for ids the provider will not delete yet), framed by intent and outcome."""
        name, result, scope = progress.result.resource, progress.result, progress.scopes[index]
        if delete.scope in ("record", "subject") and not ids:
            raise SubprocessorError(f"{self.spec.subprocessor}/{name}: refusing a delete call without ids")
        account = scope.variables["account_id"]
        count = len(ids) if count is None else count
        variables = {**scope.variables, "found": count}
        if ids:
            variables.update({"id": ids[0]} if delete.batch == 1 else {"ids": ids})
        step = "purge" if purge else "delete"
        self._check_holds(account, result.data_class, name)  # right before the call: a hold placed since stops it
        self._event("subprocessor.intent", name, account, count=count, ids_sha256=_digest(ids),
                    scope=delete.scope, step=step)
        counts = {"deleted": 0, "already_gone": 0, "not_deleted": 0}
        pending = list(ids)
        for attempt in range(1, self.spec.rate_limit.max_attempts + 1):
            response = self._call(delete.request, variables, operation=step,
                                  extra_headers=scope.headers, ids_join=delete.ids_join, ids_repeat=delete.ids_repeat)
            accepted_before = counts["deleted"]
            pending = self._read_delete(delete, name, response, pending, count, counts)
            if not purge:
                self._note_job(resource, progress, index, response, counts["deleted"] - accepted_before)
            if not pending:
                break
            variables.update({"id": pending[0]} if delete.batch == 1 else {"ids": pending})
            self._sleep(min(60.0, 2.0 ** attempt))
        else:
            counts["not_deleted"] += len(pending)
        if not purge:
            result.deleted += counts["deleted"]
            result.already_gone += counts["already_gone"]
        result.not_deleted += counts["not_deleted"]
        self._event("subprocessor.outcome", name, account, step=step, **counts)

    def _read_delete(self, delete: Delete, name: str, response: httpx.Response, ids: list[str], count: int,
                     counts: dict[str, int]) -> list[str]:
        """Count one response; returns the ids to try again later."""
        body = _json(response)
        if delete.results is not None and response.status_code in delete.success and isinstance(
                _get(body, delete.results.items) if delete.results.items else body, list):
            return self._read_items(delete, name, body, counts)
        code = _get(body, delete.error_code) if isinstance(body, (dict, list)) else None
        if response.status_code in delete.success:
            counts["deleted"] += len(ids) if ids else count
            return []
        if response.status_code in delete.already_deleted.statuses or _code_in(code, delete.already_deleted.codes):
            counts["already_gone"] += len(ids) if ids else count
            return []
        if response.status_code in delete.retry_later.statuses or _code_in(code, delete.retry_later.codes):
            return list(ids)
        raise SubprocessorError(f"{self.spec.subprocessor}/{name}: delete answered HTTP {response.status_code}"
                                + (f" (provider code {code})" if code is not None else ""))

    def _note_job(self, resource: Resource, progress: Progress, index: int, response: httpx.Response,
                  accepted: int) -> None:
        """An accepted async deletion: an async_job is waited for (``progress.jobs``); the id of an
        unpollable one is only recorded."""
        path = getattr(resource.completion, "job_id", None)
        job_id = _get(_json(response), path) if path else None
        if job_id in (None, ""):
            return
        progress.result.jobs += 1
        self._event("subprocessor.job", progress.result.resource, progress.result.account_id,
                    job_sha256=_digest([str(job_id)]))
        if isinstance(resource.completion, AsyncJob):
            progress.jobs.append(Job(str(job_id), index, accepted))

    def _read_items(self, delete: Delete, name: str, body: Any, counts: dict[str, int]) -> list[str]:
        spec = delete.results
        items = _get(body, spec.items) if spec.items else body
        retry = []
        for item in items:
            if _get(item, spec.success) is True:
                counts["deleted"] += 1
                continue
            code = _get(item, spec.error_code)
            if _code_in(code, spec.already_deleted):
                counts["already_gone"] += 1
            elif _code_in(code, spec.retry_later):
                retry.append(str(_get(item, spec.id)))
            else:
                counts["not_deleted"] += 1
                self._event("subprocessor.item_failed", name, None, code=str(code))
        return retry

    # -- completion and verification ---------------------------------------------------------------

    def _complete_and_verify(self, resource: Resource, name: str, ids_by_scope: list[tuple[_Scope, list[str]]],
                             result: ResourceResult) -> None:
        completion = resource.completion
        acted = bool(result.deleted or result.jobs)  # nothing sent: nothing to wait for
        if isinstance(completion, SoftDelete) and completion.bin_retention is not None and acted:
            result.status = "awaiting_provider"
            result.complete_by = _add(self._now(), completion.bin_retention)
        elif isinstance(completion, SoftDelete) and completion.purge is not None:
            progress = Progress(result, [scope for scope, _ in ids_by_scope])
            for index, (_, ids) in enumerate(ids_by_scope):
                for chunk in _chunks(ids, completion.purge.batch):
                    self._delete_call(completion.purge, progress, index, chunk, resource=resource, purge=True)
        if isinstance(completion, AsyncUnpollable) and acted:
            result.status = "awaiting_provider"
            result.complete_by = _add(self._now(), completion.assume_done_after)
        if result.not_deleted:
            result.status = "incomplete"
        if resource.verify.kind == "after_completion":
            # Nothing checks the outcome: where the completion rests on an assumption, so does the claim.
            result.assumed = acted and bool(result.assumptions)
            by = "we assume it completes" if result.assumed else "the provider completes"
            result.verification = (f"after_completion: {by} by {result.complete_by:%Y-%m-%d}"
                                   if result.complete_by else "after_completion: nothing was found to delete")
            if result.assumed and result.status in ("verified", "awaiting_provider"):
                result.status = "assumed"
            return
        left = self._verify(resource, ids_by_scope)
        result.verification = f"{resource.verify.kind}: {left} left"
        if left and result.status == "verified":
            result.status = "incomplete"
        # A documented read came back clean: the result stands on it, not on the assumptions (which the
        # event still lists). One that found records left is incomplete whatever was assumed.
        result.assumed = False
        self._event("subprocessor.verified", name, result.account_id, method=resource.verify.kind, left=left)

    def _verify(self, resource: Resource, ids_by_scope: list[tuple[_Scope, list[str]]]) -> int:
        left = 0
        for scope, ids in ids_by_scope:
            if resource.verify.kind == "find_empty":
                left += len(self._find_ids(resource, scope))
                continue
            for record_id in ids:
                response = self._call(resource.verify.request, {**scope.variables, "id": record_id},
                                      operation="verify", extra_headers=scope.headers)
                code = _get(_json(response), resource.delete.error_code)
                gone = response.status_code in resource.delete.already_deleted.statuses or \
                    _code_in(code, resource.delete.already_deleted.codes)
                left += 0 if gone else 1
        return left

    def _call(self, request: Request, variables: dict[str, Any], **kwargs: Any) -> httpx.Response:
        return self.client.call(request, variables, base_url=self._base_url, resource=self._resource_name, **kwargs)

    def _event(self, kind: str, resource: str, account_id: str | None, **payload: Any) -> None:
        self._record(kind, {"subprocessor": self.spec.subprocessor, "resource": resource,
                            **({"account_id": account_id} if account_id else {}), **payload})


# -- helpers ---------------------------------------------------------------------------------------

def _get(value: Any, path: str | None) -> Any:
    if not path:
        return value
    for part in path.split("."):
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def _with(body: Any, dotted: str, value: Any) -> dict:
    """A copy of a JSON body with ``a.b.c`` set (Datadog's page.cursor)."""
    out = dict(body or {})
    node = out
    parts = dotted.split(".")
    for part in parts[:-1]:
        node[part] = dict(node.get(part) or {})
        node = node[part]
    node[parts[-1]] = value
    return out


def _matches(item: dict, match: dict[str, str], variables: dict[str, Any]) -> bool:
    return all(str(_get(item, path)) == render(template, variables) for path, template in match.items())


def _next_link(response: httpx.Response, results_attribute: bool) -> str | None:
    """The ``rel="next"`` URL of the Link header (parsed by httpx); Sentry marks an empty next page
    with ``results="false"``."""
    link = response.links.get("next")
    if link is None or results_attribute and link.get("results") != "true":
        return None
    return link["url"]


def _json(response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return None


def _code_in(code: Any, codes: list) -> bool:
    return code is not None and str(code) in {str(c) for c in codes}


def _chunks(ids: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(ids), size):
        yield ids[i:i + size]


def _digest(values: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(values)).encode()).hexdigest()


def _add(at: datetime, duration: Any) -> datetime:
    return duration.after(pendulum.instance(at))
