"""A data subject request's preview: what matches the person where, what will happen to it and why, as the
persisted task list the engine runs.

Every location that keeps one of the person's identifier kinds is checked: first that its lookups go through an
index (``SubjectFinding.check_subject_lookups``; a missing one fails the preview before anything is counted),
then the person's records there are counted (``Selector.subject``). Per location with matches, one task:

- an access request exports (the task is skipped by the engine: nothing is deleted; its count is what the
  package holds);
- an erasure keeps what a legal hold covers ("legal hold <ids> in force"), and what the law keeps (a rule with a
  statutory basis, one that keeps data isolated, and the isolated copies themselves): the reason names the
  rule's basis, which the certificate lists;
- else it anonymizes where the account's rule anonymizes and the location says which columns, or deletes.

The subprocessors the request covers are asked too (counts only). Recorded as ``subject.previewed``; a request
with no match anywhere is ``nothing_found``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pendulum

from retention.engine.context import SweepContext
from retention.engine.planner import digest
from retention.engine.steps import count_mode
from retention.ledger.models import SubjectRequestRow
from retention.requests import providers
from retention.rules import Account, LegalHold, resolve
from retention.rules.inventory import SqlLocation, isolated_copies
from retention.rules.model import Action
from retention.rules.subjects import MAX_EXPANDED, Subject
from retention.settings import Settings
from retention.stores import Selector, Store
from retention.stores.base import SubjectFinding
from retention.stores.kinds import KINDS

RUN_KIND = "subject_request"
PREVIEWED = "subject.previewed"


class PreviewRefused(ValueError):
    """The request cannot be previewed in its present state (not expanded yet, or closed)."""


@dataclass(frozen=True)
class LocationPlan:
    """One location's line of the preview, and the task it becomes."""

    location: str
    data_class: str
    matched: int
    action: str  # delete | anonymize | keep | export
    rule_id: str
    basis: str | None  # for keep: why (the rule's legal basis, or the holds in force)
    pending: int  # what the task has to do: for anonymize only the rows not anonymized yet

    def task(self, account_id: str, request_id: str) -> dict[str, Any]:
        skip = None
        if self.action == "export":
            skip = "access request: exported to the customer, nothing deleted"
        elif self.action == "keep":
            skip = self.basis
        return {"account_id": account_id, "data_class": self.data_class, "location": self.location,
                "action": self.action, "rule_id": self.rule_id, "anchor": None, "cutoff": None,
                "total_count": self.matched,
                "estimated_count": 0 if skip else self.pending, "skip_reason": skip,
                "subject_request_id": request_id}

    def as_event(self) -> dict[str, Any]:
        return {"location": self.location, "data_class": self.data_class, "matched": self.matched,
                "action": self.action, "rule_id": self.rule_id, "basis": self.basis}


def preview_request(ctx: SweepContext, settings: Settings, request_id: str, at: pendulum.DateTime, *,
                    subprocessors: list[str] | None, actor: str, dag_id: str | None = None,
                    airflow_run_id: str | None = None) -> dict[str, Any]:
    """Check, count and plan the request; returns what ``requests.tasks.preview`` documents."""
    row = ctx.ledger.subject_request(request_id)
    if row.status not in ("expanded", "previewed", "awaiting_approval"):
        raise PreviewRefused(f"subject request {request_id} is {row.status}: "
                             + ("expand its identifiers first" if row.status == "filed" else "it cannot be previewed"))
    account = ctx.accounts.get(row.account_id)
    if account is None:
        raise PreviewRefused(f"subject request {request_id}: account {row.account_id} is not in the account registry")
    subject = ctx.ledger.request_subject(request_id)
    in_play = [loc for loc, spec in ctx.inventory.locations.items() if spec.subject_kinds() & subject.kinds()]
    stores = {location_id: ctx.store(location_id) for location_id in in_play}  # opened once for check and count
    for store in stores.values():  # every lookup through an index, before anything is counted
        if isinstance(store, SubjectFinding):
            store.check_subject_lookups()
    names = providers.covered_specs(settings, subprocessors)
    _supersede(ctx, row, actor=actor)
    holds = ctx.ledger.resolver_holds()
    lines = [_location(ctx, loc, stores[loc], account, subject, row.request_type, at, holds) for loc in in_play]
    found = [line for line in lines if line.matched]
    at_providers = [_provider(name, account.id, subject) for name in names]
    total = sum(line.matched for line in lines) + sum(p["matched"] or 0 for p in at_providers)
    bounded = subject.size > MAX_EXPANDED  # the expansion stopped there (requests.expand)
    ambiguous = bool((row.identifiers or {}).get("ambiguous"))  # it met another value of a kind the customer gave
    given = ctx.ledger.request_subject(request_id, given_only=True)
    identifiers = {"given": {k: len(v) for k, v in given.identifiers.items()},
                   "expanded": {k: len(v) for k, v in subject.identifiers.items()}}
    run_id = ctx.ledger.start_run(RUN_KIND, dry_run=False, as_of=at, rules_digest=ctx.ruleset.digest, dag_id=dag_id,
                                  airflow_run_id=airflow_run_id, actor=actor)
    tasks = [line.task(account.id, request_id) for line in found]
    with ctx.ledger.session() as s:
        ctx.record_account_entry(run_id, account.id, actor=actor, session=s)
        for task in tasks:
            ctx.ledger.add_planned_task(run_id, **task, session=s)
        ctx.ledger.append("run.planned", {"tasks": sum(1 for t in tasks if t["skip_reason"] is None),
                                          "skipped": sum(1 for t in tasks if t["skip_reason"] is not None),
                                          "estimated": sum(t["estimated_count"] for t in tasks),
                                          "plan_sha256": digest(tasks)}, actor=actor, run_id=run_id, session=s)
        ctx.ledger.set_request_status(request_id, "previewed", actor=actor, run_id=run_id, session=s, event=(
            PREVIEWED, {"locations": [line.as_event() for line in lines], "subprocessors": at_providers,
                        "total": total, "bounded": bounded, "ambiguous": ambiguous, "identifiers": identifiers}))
    working = [t for t in tasks if t["skip_reason"] is None]
    by_kind = {kind: sorted({t["location"] for t in working if ctx.inventory.locations[t["location"]].kind == kind})
               for kind in KINDS}
    return {"run_id": run_id, "request_id": request_id, "request_type": row.request_type, "account_id": account.id,
            "deadline_at": row.deadline_at.isoformat(), "total": total, "bounded": bounded, "ambiguous": ambiguous,
            "identifiers": identifiers,
            "needs_approval": needs_approval(row.request_type, total, bounded or ambiguous,
                                             settings.subject_approval_records),
            "nothing_found": total == 0, **by_kind,
            "export": [line.location for line in found if line.action == "export"],
            "all": [location for ids in by_kind.values() for location in ids],
            "subprocessors": [p["subprocessor"] for p in at_providers if p["scope"] == "api" and p["matched"]],
            "manual": [p["subprocessor"] for p in at_providers if p["scope"] == "manual"],
            "locations": [line.as_event() for line in lines], "at_subprocessors": at_providers}


def needs_approval(request_type: str, total: int, unchecked_expansion: bool, threshold: int) -> bool:
    """A second person approves an erasure finding more than ``threshold`` records, and any request whose
    expansion was bounded or ambiguous (it may have reached other people's identifiers or records)."""
    return unchecked_expansion or (request_type == "erasure" and total > threshold)


def previewed(ctx: SweepContext, request_id: str) -> dict[str, Any]:
    """The request's ``subject.previewed`` payload (its latest preview)."""
    row = ctx.ledger.subject_request(request_id)
    events = ctx.ledger.run_events(row.run_id, PREVIEWED) if row.run_id else []
    if not events:
        raise PreviewRefused(f"subject request {request_id} has not been previewed")
    payload: dict[str, Any] = events[-1].payload
    return payload


def _supersede(ctx: SweepContext, row: SubjectRequestRow, *, actor: str) -> None:
    """A preview tried again (an Airflow retry) replaces the earlier run, which nobody approved yet."""
    if row.run_id is None:
        return
    run = ctx.ledger.get_run(row.run_id)
    if run is not None and run.status == "running":
        if ctx.ledger.run_events(run.id, "subject.approved"):
            raise PreviewRefused(f"subject request {row.id} was approved in run {run.id}: it is not previewed again")
        ctx.ledger.finish_run(run.id, "superseded", actor=actor)


def _location(ctx: SweepContext, location_id: str, store: Store, account: Account, subject: Subject,
              request_type: str, at: pendulum.DateTime, holds: list[LegalHold]) -> LocationPlan:
    spec = ctx.inventory.locations[location_id]
    selector = Selector(account.id, subject=subject)
    matched = store.count(selector)
    decision = resolve(ctx.ruleset, account, spec.data_class, at, holds)
    if request_type == "access":
        return LocationPlan(location_id, spec.data_class, matched, "export", decision.rule_id, None, matched)
    if decision.blocked_by:
        return LocationPlan(location_id, spec.data_class, matched, "keep", decision.rule_id,
                            f"legal hold {', '.join(decision.blocked_by)} in force", 0)
    if (location_id in isolated_copies(ctx.inventory) or decision.basis.kind == "statute"
            or decision.action is Action.RETAIN_ISOLATED):
        return LocationPlan(location_id, spec.data_class, matched, "keep", decision.rule_id,
                            f"kept under law: {decision.basis.citation} (rule {decision.rule_id})", 0)
    anonymizes = decision.action is Action.ANONYMIZE and isinstance(spec, SqlLocation) and spec.anonymize is not None
    action = "anonymize" if anonymizes else "delete"
    pending = store.count(selector, **count_mode(action)) if anonymizes and matched else matched
    return LocationPlan(location_id, spec.data_class, matched, action, decision.rule_id, None, pending)


def _provider(name: str, account_id: str, subject: Subject) -> dict[str, Any]:
    match = providers.preview(name, account_id, subject)
    return {"subprocessor": name, "scope": match.scope, "matched": match.matched}
