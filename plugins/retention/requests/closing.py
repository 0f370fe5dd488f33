"""A data subject request's last steps: its subprocessors, then its outcome, read from the ledger alone.

``close`` decides from the run's tasks and the request's events, never from what a caller says happened:

- nothing matched anywhere (locations and API-scoped subprocessors): ``nothing_found``, with the counts of what
  was checked (``subject.nothing_found``);
- a task not finished or not verified clean, a subprocessor with matches that was never asked to erase, or one
  whose erasure was incomplete: ``failed``;
- a legal hold kept something (a held task, a task skipped for a hold, a subprocessor that answered held):
  ``held``;
- an access request whose package was not delivered (no ``subject.exported``): ``failed``;
- else ``completed`` (what the law keeps is listed with its basis; a manual subprocessor is pending a person's
  attestation, which the certificate states).

The ledger run is closed by the engine's report (``run.totals``), as a sweep's is.
"""

from __future__ import annotations

from typing import Any

from retention.engine.context import SweepContext
from retention.engine.executor import check_may_delete
from retention.engine.report import build_report, finish_sweep
from retention.ledger.subject_requests import CLOSED
from retention.requests import providers
from retention.requests.plan import previewed

UNFINISHED = ("planned", "running", "done", "residue")


def at_subprocessor(ctx: SweepContext, request_id: str, subprocessor: str, *, actor: str) -> dict[str, Any]:
    """Erase the person's records at one subprocessor (its subject scope checks holds right before each delete
    and records ``subject.subprocessor``). An access request's subprocessor exports go into its package
    (``requests.access``), not here."""
    row = ctx.ledger.subject_request(request_id)
    if row.request_type != "erasure":
        raise ValueError(f"subject request {request_id} is an access request: its package (requests.access) "
                         "exports what subprocessors hold")
    if row.run_id is None:
        raise ValueError(f"subject request {request_id} has not been previewed")
    check_may_delete(ctx.ledger, ctx.ledger.get_run(row.run_id))  # approved, and not closed meanwhile
    covered = {p["subprocessor"] for p in previewed(ctx, request_id)["subprocessors"]}
    if subprocessor not in covered:
        raise ValueError(f"subject request {request_id} does not cover {subprocessor} (its preview asked: "
                         f"{', '.join(sorted(covered)) or 'none'})")
    subject = ctx.ledger.request_subject(request_id)
    return providers.erase(ctx.ledger, request_id, subprocessor, row.account_id, subject, run_id=row.run_id,
                           actor=actor)


def close_request(ctx: SweepContext, request_id: str, *, actor: str) -> dict[str, Any]:
    """Close the request and its run (see the module's doc); a closed request is answered as it stands."""
    row = ctx.ledger.subject_request(request_id)
    if row.status in (*CLOSED, "held"):  # "held" stays open, to be run again once the hold ends
        return {"request_id": request_id, "status": row.status, "run_id": row.run_id}
    if row.run_id is None:
        raise ValueError(f"subject request {request_id} has not been previewed: nothing to close")
    run_id = row.run_id
    preview = previewed(ctx, request_id)
    providers_checked = preview["subprocessors"]
    if preview["total"] == 0:
        _finish_run(ctx, run_id, actor=actor)
        ctx.ledger.set_request_status(request_id, "nothing_found", actor=actor, event=("subject.nothing_found", {
            "locations_checked": len(preview["locations"]), "subprocessors_checked": len(providers_checked)}))
        return {"request_id": request_id, "status": "nothing_found", "run_id": run_id}
    if row.status != "running":  # never approved: nothing may have acted
        raise ValueError(f"subject request {request_id} is {row.status}: it was not approved, so it is not closed "
                         "as done")
    status = _outcome(ctx, request_id, row.request_type, run_id, providers_checked)
    report = _finish_run(ctx, run_id, actor=actor)
    if report == "failed":
        status = "failed"
    ctx.ledger.set_request_status(request_id, status, actor=actor)
    return {"request_id": request_id, "status": status, "run_id": run_id}


def _outcome(ctx: SweepContext, request_id: str, request_type: str, run_id: str,
             providers_checked: list[dict[str, Any]]) -> str:
    tasks = ctx.ledger.tasks(run_id)
    if request_type == "access":
        return "completed" if ctx.ledger.run_events(run_id, "subject.exported") else "failed"
    answers = subprocessor_answers(ctx, run_id, request_id)
    unasked = [p["subprocessor"] for p in providers_checked
               if p["scope"] == "api" and p["matched"] and p["subprocessor"] not in answers]
    if unasked or "incomplete" in answers.values() or any(t.status in UNFINISHED for t in tasks):
        return "failed"
    held = any(t.status == "held" or (t.status == "skipped" and (t.skip_reason or "").startswith("legal hold"))
               for t in tasks)
    return "held" if held or "held" in answers.values() else "completed"


def subprocessor_answers(ctx: SweepContext, run_id: str, request_id: str) -> dict[str, str]:
    """Subprocessor -> the outcome its latest ``subject.subprocessor`` event of this request gives in run
    ``run_id`` (the subject scope records them in the request's run; ``Ledger.run_answers``): an earlier run's
    answer (a preview superseded, a held request run again) is not this run's."""
    return {str(e.payload["subprocessor"]): str(e.payload["outcome"])
            for e in ctx.ledger.run_answers(request_id, run_id)}


def _finish_run(ctx: SweepContext, run_id: str, *, actor: str) -> str:
    """Close the run with its totals (a run closed already keeps its status); returns that status."""
    run = ctx.ledger.get_run(run_id)
    if run is None:
        raise LookupError(f"no run {run_id!r} in the ledger")
    if run.status != "running":
        return build_report(ctx.ledger, run_id).status if run.status == "succeeded" else run.status
    return finish_sweep(ctx.ledger, run_id, actor=actor).status
