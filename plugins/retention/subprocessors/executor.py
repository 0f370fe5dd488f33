"""Run one resource of a connector spec for one account: find, preview, delete, complete, verify.

Every call to the provider's API becomes a ``subprocessor.call`` event (an OAuth2 token request is not:
it carries no customer data); every destructive call is framed by
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
the expected status (a 401 or 403: wrong or revoked credentials; with OAuth2, a token endpoint refusing the
client credentials) ends the run before its first delete, recorded as ``subprocessor.preflight_failed``
(the status and the statuses expected; no body). Next-page links are followed only to the base URL's
origin (``retention.subprocessors.http``); a refused link ends the find, so no deletion proceeds on what
it listed.

Legal holds are asked for right before every destructive call (``holds(account_id, data_class)``, the
ledger's ``holds_in_force``), so a hold placed between two calls stops the next one; the stop is
recorded as ``subprocessor.held`` with the holds' ids.

Async jobs (``completion: async_job``) are not waited for here: ``begin`` returns a ``Progress`` with
the jobs it started, and ``resume`` takes their final states and goes on (the next round of a capped
search, then verification). The DAG waits in a deferrable trigger (``retention.subprocessors.trigger``);
``erase`` polls inline, in one process. A ``Progress`` is JSON: it carries scopes (tenant
variables such as a subuser name), job ids and counts, never the ids of the records being deleted.

This module runs the steps; each job is in its own module: ``finding`` (fan-out and find),
``pagination``, ``deleting`` (aimed calls, bounds, holds), ``completion`` and ``verification`` (a
strategy per spec kind), ``jobs`` (polling async jobs), ``results`` (what an erasure reports). Each
resource gets its own ``ResourceRun`` (``context``), with the client as that resource calls it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from retention.subprocessors.completion import completing
from retention.subprocessors.context import Held, Holds, Record, RecordedIdsReader, ResourceRun
from retention.subprocessors.deleting import check_bound, check_ids, delete_call, delete_scope, search_again
from retention.subprocessors.errors import CredentialsRefused, SubprocessorError
from retention.subprocessors.finding import find_ids, scopes
from retention.subprocessors.http import Client
from retention.subprocessors.jobs import async_job, poll_jobs
from retention.subprocessors.results import Progress, ResourceResult
from retention.subprocessors.spec import ConnectorSpec, outcome_assumptions
from retention.subprocessors.values import after, chunks, digest
from retention.subprocessors.verification import IdsByScope, verifying


def polls_only(account_id: str, data_class: str) -> list[str]:
    """``holds`` for an Eraser that only polls jobs (the trigger): it must never reach a delete."""
    raise SubprocessorError("this eraser only polls jobs; it was asked to delete")


class Eraser:
    """Erase one account's data held by one subprocessor, resource by resource."""

    def __init__(self, spec: ConnectorSpec, client: Client, record: Record, *, holds: Holds,
                 recorded_ids: RecordedIdsReader | None = None, sleep: Callable[[float], None] = time.sleep,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.spec = spec
        self.client = client
        self._record = record
        self._holds = holds
        self._recorded_ids = recorded_ids
        self._sleep = sleep
        self._now = now

    def erase(self, resource_name: str, account_id: str, *, cutoff: datetime | None = None,
              variables: dict[str, str] | None = None) -> ResourceResult:
        """Delete every record of the account (older than ``cutoff`` where the API can filter by time),
        waiting for async jobs in this process. ``variables``: more template values (a subject search's
        identifier, ``retention.subprocessors.subjects``)."""
        progress = self.begin(resource_name, account_id, cutoff=cutoff, variables=variables)
        while not progress.done:
            progress = self.resume(progress, self.wait_for(progress))
        return progress.result

    def begin(self, resource_name: str, account_id: str, *, cutoff: datetime | None = None,
              variables: dict[str, str] | None = None) -> Progress:
        """Find, preview and delete; finished unless async jobs were started (``progress.jobs``)."""
        run = self._run(resource_name)
        self._preflight(run, account_id)
        result = ResourceResult(self.spec.subprocessor, resource_name, run.resource.data_class, account_id,
                                assumptions=outcome_assumptions(self.spec, resource_name))
        at = cutoff or self._now()  # query-scope deletes take everything up to the cutoff (or now)
        base = {**(variables or {}), "account_id": account_id, "cutoff": at.isoformat(),
                "cutoff_ms": int(at.timestamp() * 1000)}
        ids_by_scope: IdsByScope = []
        for scope in scopes(run, base):
            ids = find_ids(run, scope)
            ids_by_scope.append((scope, ids))
            result.found += len(ids)
        run.event("subprocessor.preview", account_id, found=result.found, scopes=len(ids_by_scope))
        check_bound(run, result, "nothing was deleted")
        for scope, ids in ids_by_scope:  # every id, before the first delete: a bad one stops them all
            check_ids(run, scope, ids)
        progress = Progress(result, [scope for scope, _ in ids_by_scope])
        try:
            for index, (_, ids) in enumerate(ids_by_scope):
                delete_scope(run, progress, index, ids)
            if progress.done:
                self._finish(run, progress, ids_by_scope)
        except Held as held:  # before a delete or a purge call
            return self._stopped(run, progress, held.holds)
        return progress

    def resume(self, progress: Progress, states: dict[str, str]) -> Progress:
        """Take the final state of each job (``done`` or ``failed``), then search the capped scopes
        again; finished unless that started new jobs."""
        result = progress.result
        run = self._run(result.resource)
        for job in progress.jobs:
            state = states[job.job_id]
            run.event("subprocessor.job_finished", result.account_id, job_sha256=digest([job.job_id]), state=state)
            if state != "done":  # the provider accepted the ids but did not delete them
                result.deleted -= job.accepted
                result.not_deleted += job.accepted
        progress.jobs = []
        draining, progress.draining = progress.draining, []
        try:
            for index in draining:
                delete_scope(run, progress, index, search_again(run, progress, index))
            if progress.done:
                # Only find_empty and after_completion verify async jobs (the spec loader sees to it), and
                # neither needs the ids, which a Progress does not carry.
                self._finish(run, progress, [(scope, []) for scope in progress.scopes])
        except Held as held:  # before a delete or a purge call
            return self._stopped(run, progress, held.holds)
        return progress

    def wait_for(self, progress: Progress) -> dict[str, str]:
        """Poll every job of ``progress`` to a final state, sleeping in this process."""
        job = async_job(self._run(progress.result.resource))
        deadline = time.monotonic() + job.max_wait.nominal_seconds
        states: dict[str, str] = {}
        while not self.poll_jobs(progress, states):
            if time.monotonic() > deadline:
                raise SubprocessorError(f"{self.spec.subprocessor}: job not finished within {job.max_wait}")
            self._sleep(job.poll_every.nominal_seconds)
        return states

    def poll_jobs(self, progress: Progress, states: dict[str, str]) -> bool:
        """Ask once for each job not yet final, adding final ones to ``states``; True when all are."""
        return poll_jobs(self._run(progress.result.resource), progress, states)

    def _run(self, name: str) -> ResourceRun:
        """The resource's context: the client as that resource calls it (its own host, its name in errors)."""
        resource = self.spec.resources[name]
        api = self.client.for_resource(name, str(resource.base_url) if resource.base_url else None)
        return ResourceRun(self.spec, name, resource, api, self._record, self._holds, self._recorded_ids,
                           self._sleep, self._now)

    def _preflight(self, run: ResourceRun, account_id: str) -> None:
        """The spec's ``test_request``, before anything else of the run: credentials the provider refuses (or
        a wrong host) fail the run here, before its first delete, and ``subprocessor.preflight_failed``
        records the answer's status (no body, no credential). With OAuth2, a token endpoint refusing the
        client credentials fails it the same way, with the token endpoint's status. A pre-flight that gets
        no answer at all fails the run too, with the client's error; its ``subprocessor.call`` events say why."""
        test = self.spec.test_request
        if test is None:  # the loader requires one of every API spec; a spec built in code may lack it
            raise SubprocessorError(f"{self.spec.subprocessor}: the spec has no test_request; nothing was sent")
        # The account id goes along (the request names none) so that the client's account-id rule refuses a
        # bad one before even this read is sent.
        try:
            status = self.client.call(test, {"account_id": account_id}, operation="preflight",
                                      resource=run.name).status_code
            answered = f"answered HTTP {status}"
        except CredentialsRefused as refused:  # OAuth2: the token endpoint refused before the GET was sent
            status, answered = refused.status, f"was not sent: {refused.detail} (the credentials were refused)"
        else:
            if status in test.expect:
                return
            answered += " (the credentials were refused)" if status in (401, 403) else ""
        run.event("subprocessor.preflight_failed", account_id, status=status, expected=list(test.expect))
        raise SubprocessorError(f"{self.spec.subprocessor}: pre-flight test_request GET {test.path} {answered}, "
                                f"expected {', '.join(map(str, test.expect))}; nothing was deleted "
                                f"(Connection {self.spec.conn_id})")

    def _stopped(self, run: ResourceRun, progress: Progress, holds: list[str]) -> Progress:
        """A hold stopped the erasure, before a delete or a purge: no more calls, no verification (what is left
        is kept, not residue)."""
        progress.result.status = "held"
        progress.jobs, progress.draining = [], []
        run.event("subprocessor.result", progress.result.account_id, holds=holds, **progress.result.summary())
        return progress

    def _finish(self, run: ResourceRun, progress: Progress, ids_by_scope: IdsByScope) -> None:
        """Complete (settle the claim, purge), verify, and record the result. Every purge call checks the holds
        first (``delete_call``): one placed since the deletes raises ``Held``, which the caller ends as
        ``_stopped``, as it does for a hold found before a delete."""
        result = progress.result
        completion = completing(run.resource.completion)
        acted = bool(result.deleted or result.jobs)  # nothing sent: nothing to wait for
        completion.settle(result, acted, self._now())
        purge = completion.purge
        if purge is not None:
            for index, (_, ids) in enumerate(ids_by_scope):
                for chunk in chunks(ids, purge.batch):
                    delete_call(run, purge, progress, index, chunk, purge=True)
        if result.not_deleted:
            result.status = "incomplete"
        verifying(run.resource.verify).check(run, result, ids_by_scope, acted)
        if run.resource.provider_retention is not None:
            result.residual_copies_until = after(self._now(), run.resource.provider_retention.period)
        run.event("subprocessor.result", result.account_id, **result.summary())

