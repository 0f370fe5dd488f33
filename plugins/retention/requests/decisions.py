"""Who lets a data subject request act: nobody but the preview for a small one, a second person for a large one.

An erasure that found more than ``RETENTION_SUBJECT_APPROVAL_RECORDS`` records, and any request whose identity
expansion was bounded, waits for a person's answer in Required Actions. That person may not be
the one who filed it (a staff filer; a request the customer filed through its API credential may be approved by
any staff member), must be identified, and must hold the approval permission. Every answer and every refusal is
written to the ledger before anything acts on it; a rejection closes the request and its run.
"""

from __future__ import annotations

from typing import Any

from retention.engine.context import SweepContext
from retention.requests.plan import needs_approval, previewed

APPROVE = "Approve"
APPROVED = "subject.approved"


class SelfApproval(PermissionError):
    """Four eyes: whoever filed a request cannot approve it."""


class StaleApproval(PermissionError):
    """The answer is not to the preview the request now stands on (a later run previewed it again), or the
    request no longer waits for an answer: it is not recorded as an approval."""


class ApprovalNotPermitted(PermissionError):
    """The Airflow user who answered does not hold the permission to approve or reject requests."""


def approve_if_small(ctx: SweepContext, request_id: str, threshold: int, *, actor: str) -> bool:
    """Approve (``subject.approved``, required False) a request no second person needs to see; else mark it
    awaiting approval. Returns True when a person must approve."""
    row = ctx.ledger.subject_request(request_id)
    if row.status != "previewed":
        raise ValueError(f"subject request {request_id} is {row.status}: only a previewed request is approved")
    preview = previewed(ctx, request_id)
    total, unchecked = int(preview["total"]), bool(preview.get("bounded")) or bool(preview.get("ambiguous"))
    if needs_approval(row.request_type, total, unchecked, threshold):
        ctx.ledger.set_request_status(request_id, "awaiting_approval", actor=actor)
        return True
    ctx.ledger.set_request_status(request_id, "running", actor=actor, event=(
        APPROVED, {"required": False, "threshold": threshold, "total": total}))
    return False


def record_decision(ctx: SweepContext, request_id: str, event: dict[str, Any], threshold: int, *,
                    actor: str, run_id: str | None = None) -> bool:
    """Ledger a Required Actions answer (``event`` as Airflow's HITL gives it); returns True when approved.
    Refused, and the refusal ledgered: an approval by the request's staff filer or by nobody identified; any
    answer by a user without the APPROVE_OFFBOARDING permission."""
    from retention.permissions import Permission, is_allowed, user_for

    user = event.get("responded_by_user") or {}
    approver_id, approver_name = str(user.get("id") or ""), str(user.get("name") or "")
    approved: bool = (event.get("chosen_options") or [None])[0] == APPROVE
    approver = f"api:{approver_id}" if approver_id else ""  # the staff id form of the operator API and the filer
    reason = str((event.get("params_input") or {}).get("reason") or "").strip()
    texts = {"reason": reason} if reason else None  # free text: erasable, the chain gets its digest
    row = ctx.ledger.subject_request(request_id)
    decision = {"request_id": request_id, "approver_id": approver}
    if row.status != "awaiting_approval" or (run_id is not None and row.run_id != run_id):
        # The form showed another preview than the one the request stands on now (``run_id``: the run the form was
        # made for), or the request no longer waits: an answer to it must not approve what nobody reviewed.
        ctx.ledger.append("subject.approval_stale", decision, actor=actor, run_id=row.run_id, texts=texts)
        raise StaleApproval(f"subject request {request_id} is {row.status} in run {row.run_id}: this answer was "
                            f"for {'run ' + run_id if run_id else 'an earlier state'}; nothing was approved")
    # The filer as a bare user name, whatever the channel they filed through (``cli:<user>``, ``api:<user>``), so
    # that filing through the CLI and approving in Airflow's UI is still one person; a customer files as
    # ``customer:<credential>`` and is no staff member.
    filer = None if row.filed_by.startswith("customer:") else row.filed_by.split(":", 1)[-1]
    if approved and (not approver or row.filed_by in {approver, f"api:{approver_name}"}
                     or filer in {approver_id, approver_name}):
        ctx.ledger.append("subject.self_approval_refused", decision, actor=actor, run_id=row.run_id, texts=texts)
        raise SelfApproval(f"{approver or 'an unidentified user'} cannot approve subject request {request_id}: "
                           "another person than the one who filed it must")
    if not is_allowed(user_for(approver_id, approver_name), Permission.APPROVE_OFFBOARDING):
        ctx.ledger.append("subject.approval_not_permitted", decision, actor=actor, run_id=row.run_id, texts=texts)
        raise ApprovalNotPermitted(f"{approver or 'an unidentified user'} may not answer subject request "
                                   f"{request_id}: it needs the {Permission.APPROVE_OFFBOARDING.resource_name!r} "
                                   "permission")
    total = int(previewed(ctx, request_id)["total"])
    with ctx.ledger.session() as s:
        if approved:
            ctx.ledger.append(APPROVED, {"request_id": request_id, "required": True, "threshold": threshold,
                                         "total": total}, actor=approver, run_id=row.run_id, texts=texts, session=s)
            ctx.ledger.set_request_status(request_id, "running", actor=actor, session=s)
        else:
            ctx.ledger.append("subject.rejected", {"request_id": request_id}, actor=approver, run_id=row.run_id,
                              texts=texts, session=s)
            ctx.ledger.set_request_status(request_id, "rejected", actor=actor, session=s)
    if not approved and row.run_id is not None:
        ctx.ledger.finish_run(row.run_id, "rejected", actor=actor)
    return approved
