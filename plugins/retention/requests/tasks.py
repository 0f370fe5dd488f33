"""A data subject request's steps as Airflow (``dags/subject_request.py``) and the CLI run them: plain arguments
in, JSON-able values out (ids and counts only, never an identifier). The signatures are the contract the DAG and
the customer API build on; each step opens the ledger, the rules and the inventory, reads the registry entry of the
request's own account only (``request_context``: a request acts on one account, so each of its steps reads that
account's row, not the whole registry) and calls one module of this package."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pendulum

from retention.engine.context import SweepContext
from retention.failfast import input_refusals_fail_the_task
from retention.identifier_hashes import load_key
from retention.ledger import Ledger
from retention.ledger.chain import iso_utc
from retention.registry import load_registry
from retention.requests import closing, decisions
from retention.requests.expand import TAKEN_OVER, record_expansion
from retention.requests.filing import file_request
from retention.requests.plan import preview_request
from retention.requests.request import RequestError, parse_subject_request
from retention.rules import load_ruleset
from retention.settings import Settings


@contextmanager
def request_context(request_id: str) -> Iterator[SweepContext]:
    """What one step of request ``request_id`` works from: the ledger, the rules, the inventory, and the registry
    entry of the request's account alone (``SweepContext.load``'s ``account_id``)."""
    settings = Settings.from_env()
    with Ledger.open(settings.database_url) as ledger:
        account_id = ledger.subject_request(request_id).account_id
        yield SweepContext.load(settings, ledger, account_id=account_id)


def open_request(params: dict[str, Any], *, filed_by: str, actor: str) -> dict[str, Any]:
    """File the request the params describe (``filing.file_request``), or, with ``params["request_id"]``, take the
    request already filed (by the customer API or the CLI; nothing may have acted on it yet: filed, or previewed and
    waiting for an approval). Returns {"request_id",
    "account_id", "request_type", "deadline_at"}."""
    settings = Settings.from_env()
    request_id = params.get("request_id")
    if request_id:
        with Ledger.open(settings.database_url) as ledger, input_refusals_fail_the_task():
            row = ledger.subject_request(str(request_id))
            if row.status not in TAKEN_OVER:
                raise RequestError(f"invalid subject request: conf.request_id: request {row.id} is {row.status}: "
                                   "it is under way or closed")
    else:
        with input_refusals_fail_the_task():
            spec = parse_subject_request({k: v for k, v in params.items() if k != "request_id"})
        registry = load_registry(settings, load_ruleset(settings.rules_dir), spec.account_id)  # its entry alone
        with Ledger.open(settings.database_url) as ledger, input_refusals_fail_the_task():
            row = ledger.subject_request(file_request(ledger, settings, registry, spec, filed_by=filed_by))
    return {"request_id": row.id, "account_id": row.account_id, "request_type": row.request_type,
            "deadline_at": iso_utc(row.deadline_at)}


def expand(request_id: str, *, actor: str) -> dict[str, Any]:
    """Identity expansion through the inventory's linked identifiers (``SubjectFinding.linked``), bounded by
    ``MAX_EXPANDED`` and a few rounds; records ``subject.expanded``. Returns {"given", "expanded", "bounded"}."""
    settings = Settings.from_env()
    with request_context(request_id) as ctx:
        expansion = record_expansion(ctx, request_id, load_key(settings), actor=actor)
    return {"given": expansion.given.size, "expanded": expansion.expanded.size, "bounded": expansion.bounded}


def preview(request_id: str, *, actor: str, dag_id: str | None = None, airflow_run_id: str | None = None,
            subprocessors: list[str] | None = None) -> dict[str, Any]:
    """Start the ledger run (kind ``subject_request``), check every lookup goes through an index, count per location
    and subprocessor, plan one task per location with matches (delete / anonymize / kept under law, holds in force
    listed), record ``subject.previewed``. Returns {"run_id", "request_id", "request_type", "total",
    "needs_approval", "nothing_found", "all": [locations with tasks to run], <kind>: [its locations] for every
    store kind, "subprocessors": [names with an API subject scope and matches], "manual": [names], "export":
    [locations an access request exports], "locations" and "at_subprocessors": the preview's lines}.
    ``subprocessors``: the specs the request covers (None: every spec; []: none)."""
    settings = Settings.from_env()
    with request_context(request_id) as ctx:
        return preview_request(ctx, settings, request_id, pendulum.now("UTC"), subprocessors=subprocessors,
                               actor=actor, dag_id=dag_id, airflow_run_id=airflow_run_id)


def approval_body(previewed: dict[str, Any]) -> str:
    """The Required Actions form's text: counts per location and subprocessor, what is kept and why, the deadline;
    no identifier."""
    return render_preview(previewed)


def render_preview(previewed: dict[str, Any]) -> str:
    """The preview as Markdown (the approval form's body, the CLI's output): ids, counts and reasons only."""
    rows = [f"| {ln['location']} | {ln['data_class']} | {ln['action']} | {ln['matched']:,} | {ln['basis'] or ''} |"
            for ln in previewed["locations"]]
    providers = [f"| {p['subprocessor']} | {p['scope']} | "
                 f"{'-' if p['matched'] is None else format(p['matched'], ',')} |"
                 for p in previewed["at_subprocessors"]]
    bounded = ["", "**The identity expansion was bounded**: it reached more identifiers than a request may act on "
               "unseen, so a person must check it, whatever its size."] if previewed["bounded"] else []
    if previewed.get("ambiguous"):
        bounded += ["", "**The identity expansion is ambiguous**: an identifier linked to this person is also linked "
                    "to another value of a kind the customer gave (a shared browser or device?). Those other values "
                    "were not added, but records under the shared identifier may be someone else's: check before "
                    "approving."]
    counted = previewed.get("identifiers") or {}
    expansion = [f"Identifiers: given {_kinds(counted.get('given', {}))}; after expansion "
                 f"{_kinds(counted.get('expanded', {}))}."] if counted else []
    return "\n".join([
        f"{previewed['request_type'].capitalize()} request `{previewed['request_id']}` of account "
        f"**{previewed['account_id']}**, legal deadline {previewed['deadline_at']}; "
        f"ledger run `{previewed['run_id']}`.",
        f"{previewed['total']:,} record(s) of this person found.", *expansion, *bounded, "",
        "| location | data class | action | records | kept because |", "|---|---|---|---:|---|", *rows, "",
        "| subprocessor | scope | records |", "|---|---|---:|", *providers, "",
        "The person who filed the request cannot approve it; answering needs the Retention Offboarding Approval "
        "permission. No identifier is shown here: the ledger keeps them only as keyed hashes."])


def _kinds(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items())) or "none"


def approve_if_small(request_id: str, *, actor: str) -> bool:
    """Record ``subject.approved`` (required False) when the preview found at most RETENTION_SUBJECT_APPROVAL_RECORDS
    and the expansion was not bounded; returns True when a second person must approve instead."""
    settings = Settings.from_env()
    with request_context(request_id) as ctx:
        return decisions.approve_if_small(ctx, request_id, settings.subject_approval_records, actor=actor)


def record_decision(request_id: str, event: dict[str, Any], *, actor: str, run_id: str | None = None) -> None:
    """A Required Actions answer: refused (and ledgered) from the person who filed it, from nobody identified, or
    from a user without the approval permission, or to another preview than the request's current one (``run_id``:
    the run the form was made for); else ``subject.approved`` / ``subject.rejected`` (which closes the
    request and its run as rejected)."""
    settings = Settings.from_env()
    with request_context(request_id) as ctx, input_refusals_fail_the_task():
        decisions.record_decision(ctx, request_id, event, settings.subject_approval_records, actor=actor,
                                  run_id=run_id)


def at_subprocessor(request_id: str, subprocessor: str, *, actor: str) -> dict[str, Any]:
    """Erase the person's records at one subprocessor the preview covered (its subject scope checks holds right
    before each delete and records ``subject.subprocessor``; a manual one is recorded as pending a person).
    Refused for an access request: its package (``requests.access.deliver``) exports what subprocessors hold."""
    with request_context(request_id) as ctx:
        return closing.at_subprocessor(ctx, request_id, subprocessor, actor=actor)


def close(request_id: str, *, actor: str) -> dict[str, Any]:
    """Finish the run and the request: ``completed``, ``held`` (a hold stopped a task), ``nothing_found`` or
    ``failed`` (residue or an unfinished task). Returns {"request_id", "status", "run_id"}."""
    with request_context(request_id) as ctx:
        return closing.close_request(ctx, request_id, actor=actor)


def certify(request_id: str, *, actor: str) -> dict[str, Any]:
    """The erasure's signed certificate (``certify.certify_request``; issued once, a retry answers with it)."""
    from retention.requests.certify import certify_request

    with request_context(request_id) as ctx:
        return dict(certify_request(ctx, Settings.from_env(), request_id, actor=actor))
