"""Asking the provider about the async deletion jobs an erasure started (``completion: async_job``): one
status call per job, or one listing of jobs where the provider only lists them (Datadog)."""

from __future__ import annotations

from retention.subprocessors.context import ResourceRun
from retention.subprocessors.errors import SubprocessorError
from retention.subprocessors.pagination import list_items
from retention.subprocessors.results import Progress, Scope
from retention.subprocessors.spec import AsyncJob
from retention.subprocessors.values import get, json_of


def async_job(run: ResourceRun) -> AsyncJob:
    """The resource's async_job completion; SubprocessorError for a resource that starts no jobs."""
    completion = run.resource.completion
    if not isinstance(completion, AsyncJob):
        raise SubprocessorError(f"{run.who}/{run.name}: completion {completion.kind} starts no jobs to wait for")
    return completion


def poll_jobs(run: ResourceRun, progress: Progress, states: dict[str, str]) -> bool:
    """Ask once for each job not yet final, adding final ones to ``states``; True when all are."""
    job = async_job(run) if progress.jobs else None
    for started in progress.jobs:
        if job is not None and started.job_id not in states:
            state = job_state(run, job, started.job_id, progress.scopes[started.scope])
            if state is not None:
                states[started.job_id] = state
    return all(started.job_id in states for started in progress.jobs)


def job_state(run: ResourceRun, job: AsyncJob, job_id: str, scope: Scope) -> str | None:
    """One status call (or one listing of jobs): ``done``, ``failed``, or None while the job runs."""
    variables = {**scope.variables, "job_id": job_id}
    if job.items is not None:
        if job.pagination is None:  # the loader refuses such a spec; one built in code may have it
            raise SubprocessorError(f"{run.who}/{run.name}: a job listing needs pagination; nothing was asked")
        listed = list_items(run.api, run.who, job.status, job.pagination, job.items, Scope(variables, scope.headers),
                            "job_status")
        found = next((item for item in listed if str(get(item, job.item_id)) == job_id), None)
        if found is None:
            return None  # not listed (yet): still running as far as we can tell
        state = str(get(found, job.status_field))
    else:
        response = run.api.call(job.status, variables, operation="job_status", extra_headers=scope.headers)
        if not response.is_success:
            raise SubprocessorError(f"{run.who}: job status answered HTTP {response.status_code}")
        state = str(get(json_of(response), job.status_field))
    if state in job.done:
        return "done"
    return "failed" if state in job.failed else None
