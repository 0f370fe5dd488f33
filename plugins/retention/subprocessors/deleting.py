"""Deleting one scope's records: aimed calls in batches, each framed by ``subprocessor.intent`` and
``subprocessor.outcome`` and preceded by a check of the legal holds; a capped search repeated until it
comes back short; the bounds every preview and every found id must pass before the first delete."""

from __future__ import annotations

from typing import Any

import httpx

from retention.identifier_hashes import keyed_digest
from retention.subprocessors.completion import completing
from retention.subprocessors.context import ResourceRun
from retention.subprocessors.errors import RecordsBoundExceeded, SubprocessorError
from retention.subprocessors.finding import find_ids, search_cap
from retention.subprocessors.render import render
from retention.subprocessors.results import Job, Progress, ResourceResult, Scope
from retention.subprocessors.spec import Delete, GetAbsent, ItemResults
from retention.subprocessors.values import chunks, code_in, digest, get, json_of

MAX_ROUNDS = 50  # capped searches are repeated after each deletion round, at most this often


def delete_scope(run: ResourceRun, progress: Progress, index: int, ids: list[str]) -> None:
    delete = run.resource.delete
    if delete.scope in ("tenant", "query"):
        if ids:  # one call for the whole tenant or query; the preview found something to delete
            delete_call(run, delete, progress, index, [], count=len(ids))
        return
    cap = search_cap(run)
    while True:
        for chunk in chunks(ids, delete.batch):
            delete_call(run, delete, progress, index, chunk)
        if not (cap and len(ids) >= cap):
            return  # the search was not capped: it found everything
        if any(job.scope == index for job in progress.jobs):
            progress.draining.append(index)  # the records go when the jobs end: search again then
            return
        ids = search_again(run, progress, index)


def search_again(run: ResourceRun, progress: Progress, index: int) -> list[str]:
    """A search capped at N found N: there may be more."""
    progress.rounds += 1
    result = progress.result
    if progress.rounds > MAX_ROUNDS:
        raise SubprocessorError(f"{run.who}/{result.resource}: still finding records after {MAX_ROUNDS} rounds")
    ids = find_ids(run, progress.scopes[index])
    result.found += len(ids)
    run.event("subprocessor.preview", result.account_id, found=len(ids), round=True)
    check_bound(run, result, f"{result.deleted} were deleted in earlier rounds")
    check_ids(run, progress.scopes[index], ids)
    return ids


def check_bound(run: ResourceRun, result: ResourceResult, done_so_far: str) -> None:
    """``max_records`` bounds every record the previews found, all rounds of a capped search together:
    a search capped at 50 never finds more than 50 at once, so the first preview alone would never
    trip it."""
    bound = run.resource.max_records
    if bound is not None and result.found > bound:
        raise RecordsBoundExceeded(f"{run.who}/{result.resource}: account {result.account_id} has at least "
                                   f"{result.found} matching records, more than max_records ({bound}); "
                                   f"{done_so_far}, nothing more is deleted")


def check_ids(run: ResourceRun, scope: Scope, ids: list[str]) -> None:
    """Every id found, through the same rule as ``render`` (never empty, no ``.`` or ``..`` in a path),
    before the first delete call: checked call by call, the ids before a bad one would already be
    deleted when it is refused."""
    resource = run.resource
    requests = [resource.delete.request]
    purge = completing(resource.completion).purge
    if purge is not None:
        requests.append(purge.request)
    if isinstance(resource.verify, GetAbsent):
        requests.append(resource.verify.request)
    for record_id in ids:
        variables = {**scope.variables, "id": record_id, "ids": [record_id], "found": len(ids)}
        try:
            for request in requests:
                render(request.path, variables, in_path=True)
                for template in request.query.values():
                    render(str(template), variables)
        except SubprocessorError as exc:
            raise SubprocessorError(f"{run.who}/{run.name}: a found id was refused before any deletion: "
                                    f"{exc}") from None


def delete_call(run: ResourceRun, delete: Delete, progress: Progress, index: int, ids: list[str], *,
                count: int | None = None, purge: bool = False) -> None:
    """One aimed delete (retried for ids the provider will not delete yet), framed by intent and outcome."""
    result, scope = progress.result, progress.scopes[index]
    if delete.scope in ("record", "subject") and not ids:
        raise SubprocessorError(f"{run.who}/{run.name}: refusing a delete call without ids")
    account = scope.variables["account_id"]
    count = len(ids) if count is None else count
    variables = {**scope.variables, "found": count}
    if ids:
        variables.update({"id": ids[0]} if delete.batch == 1 else {"ids": ids})
    step = "purge" if purge else "delete"
    run.check_holds(account)  # right before the call: a hold placed since stops it
    # Keyed: an id can be an identifier itself (a bounce is named by its e-mail address), and a plain sha256 of one
    # could be tested against a guessed address by anyone reading the chain.
    run.event("subprocessor.intent", account, count=count, ids_hmac_sha256=keyed_digest(ids), scope=delete.scope,
              step=step)
    counts = {"deleted": 0, "already_gone": 0, "not_deleted": 0}
    pending = list(ids)
    for attempt in range(1, run.spec.rate_limit.max_attempts + 1):
        response = run.api.call(delete.request, variables, operation=step, extra_headers=scope.headers,
                                ids_join=delete.ids_join, ids_repeat=delete.ids_repeat)
        accepted_before = counts["deleted"]
        pending = _read_delete(run, delete, response, pending, count, counts)
        if not purge:
            _note_job(run, progress, index, response, counts["deleted"] - accepted_before)
        if not pending:
            break
        variables.update({"id": pending[0]} if delete.batch == 1 else {"ids": pending})
        run.sleep(min(60.0, 2.0 ** attempt))
    else:
        counts["not_deleted"] += len(pending)
    if not purge:
        result.deleted += counts["deleted"]
        result.already_gone += counts["already_gone"]
    result.not_deleted += counts["not_deleted"]
    run.event("subprocessor.outcome", account, step=step, **counts)


def _read_delete(run: ResourceRun, delete: Delete, response: httpx.Response, ids: list[str], count: int,
                 counts: dict[str, int]) -> list[str]:
    """Count one response; returns the ids to try again later."""
    body = json_of(response)
    results = delete.results
    if results is not None and response.status_code in delete.success and isinstance(
            get(body, results.items) if results.items else body, list):
        return _read_items(run, results, body, counts)
    code = get(body, delete.error_code) if isinstance(body, (dict, list)) else None
    if response.status_code in delete.success:
        counts["deleted"] += len(ids) if ids else count
        return []
    if response.status_code in delete.already_deleted.statuses or code_in(code, delete.already_deleted.codes):
        counts["already_gone"] += len(ids) if ids else count
        return []
    if response.status_code in delete.retry_later.statuses or code_in(code, delete.retry_later.codes):
        return list(ids)
    raise SubprocessorError(f"{run.who}/{run.name}: delete answered HTTP {response.status_code}"
                            + (f" (provider code {code})" if code is not None else ""))


def _read_items(run: ResourceRun, spec: ItemResults, body: Any, counts: dict[str, int]) -> list[str]:
    """Per-item results (``delete.results``): each item counted; the ids to try again later returned."""
    retry = []
    for item in get(body, spec.items) if spec.items else body:
        if get(item, spec.success) is True:
            counts["deleted"] += 1
            continue
        code = get(item, spec.error_code)
        if code_in(code, spec.already_deleted):
            counts["already_gone"] += 1
        elif code_in(code, spec.retry_later):
            retry.append(str(get(item, spec.id)))
        else:
            counts["not_deleted"] += 1
            run.event("subprocessor.item_failed", None, code=str(code))
    return retry


def _note_job(run: ResourceRun, progress: Progress, index: int, response: httpx.Response, accepted: int) -> None:
    """An accepted async deletion: an async_job is waited for (``progress.jobs``); the id of an
    unpollable one is only recorded."""
    completion = completing(run.resource.completion)
    job_id = get(json_of(response), completion.job_id) if completion.job_id else None
    if job_id in (None, ""):
        return
    progress.result.jobs += 1
    run.event("subprocessor.job", progress.result.account_id, job_sha256=digest([str(job_id)]))
    if completion.waits_for_jobs:
        progress.jobs.append(Job(str(job_id), index, accepted))
