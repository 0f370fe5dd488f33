"""A termination as a plan: every location of one account, what happens to it, and why.

The plan is the same persisted task list the sweep uses (one task per location, executed and verified
by the same engine), made for one account as if terminated with the customer's election. Written to
the ledger before approval, so the approver sees exactly what will run and the run resumes like a sweep.

What the offboarding does per data class, acting on the customer's documented instruction (DPA 7(b),
SCC Clause 12): a class under a legal hold is kept; a class a statute keeps (``retain_isolated``) is
moved to its isolated table, never deleted here; every other class is deleted (or anonymized where its
rule anonymizes) now, whatever deadline its terminated-state rule allows.
"""

from __future__ import annotations

from typing import Any

import pendulum

from retention.engine.context import SweepContext
from retention.engine.planner import digest
from retention.engine.steplog import log_step
from retention.ledger import Ledger
from retention.ledger.chain import iso_utc
from retention.offboarding.request import OffboardingRequest, RequestError
from retention.rules import Account, LegalHold, resolve
from retention.rules.accounts import CustomerElection
from retention.rules.inventory import isolated_copies
from retention.rules.model import AccountState, Action
from retention.stores import Selector, Store
from retention.stores.base import Isolating
from retention.stores.kinds import KINDS

PLANNED = "offboarding.requested"
NOTES = ("isolated_until", "law", "isolation")  # for the ledger event and the approver, not the task row


def terminated_view(account: Account, request: OffboardingRequest, at: pendulum.DateTime) -> Account:
    """The account as the rules see it once terminated with this election."""
    return account.model_copy(update={
        "state": AccountState.TERMINATED, "terminated_at": request.effective_date or at,
        "election": CustomerElection(choice=request.choice, elected_at=at)})


def plan_offboarding(ctx: SweepContext, request: OffboardingRequest, at: pendulum.DateTime, *, requested_by: str,
                     actor: str, dag_id: str | None = None, airflow_run_id: str | None = None) -> dict[str, Any]:
    """Plan and ledger the offboarding; ``requested_by`` is the staff id of the Airflow user who triggered it
    (``request.requester``), the one identity that may not approve it."""
    account = ctx.accounts.get(request.account_id)
    if account is None:
        raise RequestError(f"invalid offboarding request: conf.account_id: no account {request.account_id!r} "
                           "in the account registry")
    if airflow_run_id is not None:  # a retried plan task: its earlier run is replaced; approval reads this one
        for earlier in ctx.ledger.open_runs("offboarding", airflow_run_id=airflow_run_id):
            ctx.ledger.finish_run(earlier.id, "superseded", actor=actor)
    terminated = terminated_view(account, request, at)
    effective_at = iso_utc(request.effective_date or at)  # terminated_view's terminated_at
    holds = ctx.ledger.resolver_holds()
    rows = [_row(ctx, location_id, terminated, at, holds) for location_id in _planned_locations(ctx)]
    run_id = ctx.ledger.start_run("offboarding", dry_run=False, as_of=at, rules_digest=ctx.ruleset.digest,
                                  dag_id=dag_id, airflow_run_id=airflow_run_id, actor=actor)
    working = [r for r in rows if r["skip_reason"] is None]
    with ctx.ledger.session() as s:
        ctx.record_registry(run_id, actor=actor, session=s, account_id=account.id)
        for row in rows:
            ctx.ledger.add_planned_task(run_id, **{k: v for k, v in row.items() if k not in NOTES}, session=s)
        ctx.ledger.append(PLANNED, {
            "account_id": account.id, "choice": request.choice.value, "requested_by": requested_by,
            "reference": request.reference, "effective_at": effective_at,
            "contract_end": iso_utc(account.contract_end) if account.contract_end else None,
            "return_window_days": request.return_window_days,
            "subprocessors": sorted(request.subprocessors) if request.subprocessors is not None else None,
            "isolated": [{"location": r["location"], "data_class": r["data_class"], "rule_id": r["rule_id"],
                          "records": r["total_count"], "until": r["isolated_until"], "law": r["law"],
                          "isolation": r["isolation"]}
                         for r in working if r["action"] == "isolate" and r["total_count"]]},
                          actor=actor, run_id=run_id, session=s)
        summary = {"tasks": len(working), "skipped": len(rows) - len(working),
                   "estimated": sum(r["estimated_count"] for r in working), "plan_sha256": digest(rows)}
        ctx.ledger.append("run.planned", summary, actor=actor, run_id=run_id, session=s)
    log_step("run.planned", run_id=run_id, kind="offboarding", account_id=account.id, choice=request.choice.value,
             **summary)
    by_kind = {kind: sorted({r["location"] for r in working
                             if ctx.inventory.locations[r["location"]].kind == kind}) for kind in KINDS}
    return {"run_id": run_id, "account_id": account.id, "choice": request.choice.value, "requested_by": requested_by,
            "effective_at": effective_at, **by_kind,
            "all": [location for ids in by_kind.values() for location in ids], "lines": [_line(r) for r in rows]}


def account_of(ledger: Ledger, run_id: str) -> str:
    """The account an offboarding run is for, as its request recorded it."""
    return str(_requested(ledger, run_id)["account_id"])


def requester_of(ledger: Ledger, run_id: str) -> str:
    """The staff id that requested an offboarding run, as its plan recorded it."""
    return str(_requested(ledger, run_id)["requested_by"])


def _requested(ledger: Ledger, run_id: str) -> dict[str, Any]:
    requested = ledger.run_events(run_id, PLANNED)
    if not requested:
        raise LookupError(f"run {run_id!r} is not an offboarding: it has no {PLANNED} event")
    payload: dict[str, Any] = requested[0].payload
    return payload


def _planned_locations(ctx: SweepContext) -> list[str]:
    """Every location, empty ones included (data may arrive before the effective date), except the isolated
    copies of data kept under law: those are deleted by the sweep when their period ends."""
    copies = isolated_copies(ctx.inventory)
    return [location_id for location_id in ctx.inventory.locations if location_id not in copies]


def _row(ctx: SweepContext, location_id: str, account: Account, at: pendulum.DateTime,
         holds: list[LegalHold]) -> dict[str, Any]:
    spec = ctx.inventory.locations[location_id]
    store = ctx.store(location_id)
    total = store.count(Selector(account.id))
    decision = resolve(ctx.ruleset, account, spec.data_class, at, holds)
    action = {Action.RETAIN_ISOLATED: "isolate", Action.ANONYMIZE: "anonymize"}.get(decision.action, "delete")
    held = f"legal hold {', '.join(decision.blocked_by)} in force" if decision.blocked_by else None
    until = isolation = None
    if action == "isolate" and not held:
        latest = getattr(account, decision.anchor.value) if decision.anchor.is_account_event \
            else _isolating(store, location_id).latest(Selector(account.id), decision.anchor.value)
        until = iso_utc(decision.retain_for.after(pendulum.instance(latest))) if latest else None
        copy = spec.isolated()
        if copy is None:  # the inventory refuses a rule that keeps data isolated where no isolated copy is named
            raise ValueError(f"location {location_id}: a rule keeps its data isolated, but it names no isolated copy")
        isolation = (f"moved to {copy.place()}, which application roles cannot read; each record deleted "
                     f"{decision.retain_for} after its {decision.anchor.value}")
    return {"account_id": account.id, "data_class": spec.data_class, "location": location_id,
            "action": "keep" if held else action, "rule_id": decision.rule_id, "anchor": None, "cutoff": None,
            "total_count": total, "estimated_count": 0 if held else total, "skip_reason": held,
            "isolated_until": until, "law": decision.basis.citation, "isolation": isolation}


def _isolating(store: Store, location_id: str) -> Isolating:
    """The inventory lets only locations whose kind isolates keep data under law; their stores say so."""
    if not isinstance(store, Isolating):
        raise TypeError(f"location {location_id}: a rule keeps its data isolated, but its store cannot isolate")
    return store


def _line(row: dict[str, Any]) -> dict[str, Any]:
    """What the approver reads: no record contents, only where, what, how many and why."""
    return {"location": row["location"], "data_class": row["data_class"], "action": row["action"],
            "records": row["total_count"], "rule_id": row["rule_id"],
            "note": row["skip_reason"] or (f"kept under law, isolated until {row['isolated_until']}"
                                           if row["action"] == "isolate" else None)}
