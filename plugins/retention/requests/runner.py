"""A data subject request from start to end in one process (``retention request run``), the same steps the
``subject_request`` DAG runs: expand, preview, approval (a request that needs a second person stops here: the DAG's
approval form takes it over), every location executed and verified by the engine, the subprocessors, close, and
the certificate of an erasure or the package of an access request."""

from __future__ import annotations

from typing import Any

import pendulum

from retention.engine.context import SweepContext
from retention.engine.executor import execute_location
from retention.engine.verifier import verify_location
from retention.identifier_hashes import load_key
from retention.requests import closing, decisions
from retention.requests.expand import record_expansion
from retention.requests.plan import preview_request
from retention.settings import Settings


def run_request(ctx: SweepContext, settings: Settings, request_id: str, *, subprocessors: list[str] | None,
                recipient: str | None, actor: str) -> dict[str, Any]:
    """``recipient``: the customer's age public key an access request's package is encrypted to (None: the one it
    was filed with). Returns
    {"request_id", "expansion", "preview", "needs_approval", and once run: "executed" (location -> records affected),
    "subprocessors" (name -> outcome), "status", "certificate" or "package"}."""
    row = ctx.ledger.subject_request(request_id)
    recipient = recipient or row.recipient
    if row.request_type == "access" and recipient is None:
        raise ValueError("an access request's package is encrypted to the customer's age public key: it was filed "
                         "without one, so give its recipient (age1...)")
    expansion = record_expansion(ctx, request_id, load_key(settings), actor=actor)
    preview = preview_request(ctx, settings, request_id, pendulum.now("UTC"), subprocessors=subprocessors,
                              actor=actor)
    done: dict[str, Any] = {"request_id": request_id, "preview": preview,
                            "expansion": {"given": expansion.given.size, "expanded": expansion.expanded.size,
                                          "bounded": expansion.bounded, "rounds": expansion.rounds}}
    if not preview["nothing_found"]:
        if decisions.approve_if_small(ctx, request_id, settings.subject_approval_records, actor=actor):
            return {**done, "needs_approval": True, "status": "awaiting_approval"}
        run_id = preview["run_id"]
        done["executed"] = {loc: execute_location(ctx, run_id, loc, actor=actor) for loc in preview["all"]}
        for location in preview["all"]:
            verify_location(ctx, run_id, location, actor=actor)
        if preview["request_type"] == "erasure":
            asked = [*preview["subprocessors"], *preview["manual"]]
            done["subprocessors"] = {name: closing.at_subprocessor(ctx, request_id, name, actor=actor)["outcome"]
                                     for name in asked}
        else:
            done["package"] = _deliver(request_id, str(recipient), actor=actor, subprocessors=subprocessors)
    closed = closing.close_request(ctx, request_id, actor=actor)
    done.update(needs_approval=False, status=closed["status"])
    if preview["request_type"] == "erasure":
        done["certificate"] = _certify(ctx, settings, request_id, actor=actor)
    return done


def _deliver(request_id: str, recipient: str, *, actor: str, subprocessors: list[str] | None) -> dict[str, Any]:
    """The access package (``requests.access``); a clear failure when this installation has none."""
    try:
        from retention.requests.access import deliver
    except ImportError as exc:
        raise RuntimeError(f"retention.requests.access cannot be imported ({exc}): the access package cannot be "
                           "made") from None
    delivered: dict[str, Any] = dict(deliver(request_id, recipient, actor=actor, subprocessors=subprocessors))
    return delivered


def _certify(ctx: SweepContext, settings: Settings, request_id: str, *, actor: str) -> dict[str, Any] | None:
    """The erasure's certificate, or None with the reason when the request closed without one (failed)."""
    from retention.requests.certify import CERTIFIABLE, certify_request

    if ctx.ledger.subject_request(request_id).status not in CERTIFIABLE:
        return None
    return dict(certify_request(ctx, settings, request_id, actor=actor))
