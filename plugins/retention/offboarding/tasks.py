"""The termination offboarding's steps as Airflow runs them: plain arguments in, JSON-able values out."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import pendulum

from retention.engine.tasks import context
from retention.failfast import input_refusals_fail_the_task
from retention.offboarding import returns
from retention.offboarding.plan import plan_offboarding, requester_of
from retention.offboarding.request import parse_request
from retention.settings import Settings
from retention.stores import s3_client

if TYPE_CHECKING:
    from retention.certificates.archive import SavedSupplement
    from retention.offboarding.backups import BackupsRecorded
    from retention.offboarding.certify import Certified

APPROVE = "Approve"


class SelfApproval(PermissionError):
    """Four eyes: whoever requested an offboarding cannot approve it."""


class ApprovalNotPermitted(PermissionError):
    """The Airflow user who answered does not hold the permission to approve or reject offboardings."""


def plan(conf: dict[str, Any], *, requested_by: str, actor: str, dag_id: str | None = None,
         airflow_run_id: str | None = None) -> dict[str, Any]:
    request = parse_request(conf)
    with context() as ctx:
        return plan_offboarding(ctx, request, pendulum.now("UTC"), requested_by=requested_by, actor=actor,
                                dag_id=dag_id, airflow_run_id=airflow_run_id)


def approval_body(plan: dict[str, Any]) -> str:
    """The plan as the approver reads it (Markdown): where, what, how many, and what is kept and why."""
    rows = [f"| {ln['location']} | {ln['data_class']} | {ln['action']} | {ln['records']:,} | {ln['note'] or ''} |"
            for ln in plan["lines"]]
    return "\n".join([
        f"Account **{plan['account_id']}**, election **{plan['choice']}**, effective {plan['effective_at']}.",
        f"Ledger run `{plan['run_id']}`.", "",
        "| location | data class | action | records | note |", "|---|---|---|---:|---|", *rows, "",
        f"Requested by `{plan['requested_by']}` (the Airflow user who triggered this run), who cannot approve it; "
        "answering needs the Retention Offboarding Approval permission.",
        "Subprocessors are asked to erase the account's data as well."])


def record_decision(run_id: str, event: dict[str, Any], *, actor: str) -> None:
    """Ledger the answer. Refused, and the refusal ledgered: an approval by the run's requester (the Airflow user
    who triggered it, as the plan recorded it) or by nobody identified; any answer by a user without the
    APPROVE_OFFBOARDING permission (a Viewer rejecting would stop a deletion the contract requires)."""
    from retention.permissions import Permission, is_allowed, user_for

    user = event.get("responded_by_user") or {}
    approver_id, approver_name = str(user.get("id") or ""), str(user.get("name") or "")
    approved = (event.get("chosen_options") or [None])[0] == APPROVE
    # The same staff id form as the requester's (``request.requester``) and the operator API's.
    approver = f"api:{approver_id}" if approver_id else ""
    decision = {"approver_id": approver, "responded_at": _iso(event.get("responded_at"))}
    # The reason is free text: kept erasable outside the chain; the events carry reason_sha256.
    reason = str((event.get("params_input") or {}).get("reason") or "").strip()
    texts = {"reason": reason} if reason else None
    with context() as ctx, input_refusals_fail_the_task():
        requester = requester_of(ctx.ledger, run_id)
        if approved and (not approver or requester in {approver, f"api:{approver_name}"}):
            ctx.ledger.append("offboarding.self_approval_refused", decision, actor=actor, run_id=run_id, texts=texts)
            raise SelfApproval(f"{approver or 'an unidentified user'} cannot approve this offboarding: "
                               "another person than its requester must")
        if not is_allowed(user_for(approver_id, approver_name), Permission.APPROVE_OFFBOARDING):
            ctx.ledger.append("offboarding.approval_not_permitted", decision, actor=actor, run_id=run_id, texts=texts)
            raise ApprovalNotPermitted(f"{approver or 'an unidentified user'} may not answer this offboarding: "
                                       f"it needs the {Permission.APPROVE_OFFBOARDING.resource_name!r} permission")
        ctx.ledger.append("offboarding.approved" if approved else "offboarding.rejected", decision,
                          actor=actor, run_id=run_id, texts=texts)
        if not approved:
            ctx.ledger.finish_run(run_id, "rejected", actor=actor)


def deliver_return(run_id: str, conf: dict[str, Any], *, actor: str) -> dict[str, Any] | None:
    """Export and deliver the return package when the customer elected return; None otherwise."""
    request = parse_request(conf)
    if request.choice.value != "return":
        return None
    if request.return_recipient is None:  # parse_request refuses a return without one
        raise ValueError("invalid offboarding request: conf.return_recipient: a return needs the customer's age key")
    settings = Settings.from_env()
    with context() as ctx:
        delivered = returns.deliver(ctx, run_id, request.return_recipient, client=s3_client(settings.returns_conn_id),
                                    bucket=settings.returns_bucket, window_days=request.return_window_days, actor=actor,
                                    link_secret=settings.link_secret)
    return delivered


def return_settled(run_id: str, *, actor: str) -> bool:
    """True once the customer confirmed receipt or the return window ended (or nothing was returned)."""
    with context() as ctx:
        return returns.return_state(ctx.ledger, run_id, actor=actor) != "waiting"


def _iso(value: object) -> str | None:
    if value is None:
        return None
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def backups(run_id: str, *, actor: str) -> BackupsRecorded:
    """Schedule the account's data key for destruction and record which snapshots still hold its data."""
    from retention.offboarding.backups import record_backups

    with context() as ctx:
        return record_backups(ctx, run_id, Settings.from_env(), pendulum.now("UTC"), actor=actor)


def certify(run_id: str, *, actor: str) -> Certified:
    """Delete the settled return package, close the run (fails on residue or unfinished work), then sign a
    certificate and make the customer's link."""
    from retention.offboarding.certify import certify_run

    settings = Settings.from_env()
    with context() as ctx:
        returns.remove_package(ctx.ledger, run_id, client=s3_client(settings.returns_conn_id), actor=actor)
        return certify_run(ctx, run_id, settings, actor=actor)


def confirm_backups(*, actor: str, now: datetime | None = None) -> list[str]:
    """The daily backup check; returns the accounts whose backup line changed."""
    from retention.offboarding.backups import confirm_backups as confirm

    with context() as ctx:
        return confirm(ctx, Settings.from_env(), now or pendulum.now("UTC"), actor=actor)


def supplement_certificates(accounts: list[str], *, actor: str) -> list[SavedSupplement]:
    """A signed supplement to each account's latest certificate that has something newly completed."""
    from retention.certificates import KeySet, issue_supplement, load_signing_key
    from retention.certificates.archive import ACCOUNT_DELETION, Archive, issued
    from retention.certificates.supplement import NothingToSupplement

    settings = Settings.from_env()
    if settings.jwks_file is None:
        raise ValueError("RETENTION_JWKS_FILE is not set: a supplement is checked against the published keys")
    archive, made = Archive(settings.certificates_dir), []
    key, keys = load_signing_key(settings.signing_key_file), KeySet.read(settings.jwks_file)
    with context() as ctx:
        for account_id in accounts:
            # The account's deletion certificate, not a subject erasure's of one of its people.
            current = [c for c in issued(ctx.ledger, account_id).values()
                       if not c.revoked and c.kind == ACCOUNT_DELETION]
            original = archive.load(current[-1].certificate_id, "json") if current else None
            if original is None:
                continue
            try:
                document = issue_supplement(ctx.ledger, original, key, keys, actor=actor)
            except NothingToSupplement:
                continue
            made.append(archive.save_supplement(document))
    return made
