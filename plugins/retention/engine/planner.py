"""Decisions x inventory -> a persisted plan: one task per account x data class x location, with counts.

Everything is validated before anything is planned: rules, inventory and accounts load whole or the
run stops with file:line:field, and no store is touched.

Two things the rules alone would allow, the sweep refuses:
- a terminated account's data is never deleted wholesale here: that is its offboarding's job (approved
  by a second person, certified); the sweep plans it as kept and ``engine.overdue`` reports a termination
  whose offboarding has not started in time;
- a plan that would make more than a set share of a location's records due at once (a typo in a period,
  say) deletes nothing there unless the run acknowledges that location; the plan records the counts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import pendulum

from retention.engine.context import MassDeletionPolicy, SweepContext
from retention.engine.steplog import log_step
from retention.engine.steps import Skip, Step, count_mode, step_for
from retention.ledger.chain import canonical_json, iso_utc
from retention.rules import Account, AccountState, Decision, LegalHold, resolve
from retention.stores import Due
from retention.stores.kinds import KINDS


@dataclass(frozen=True)
class MassDeletion:
    """A location where the plan would make more than the policy's share of its records due at once."""

    location: str
    due: int  # records the plan would delete or anonymize there
    total: int  # records of registered accounts there
    acknowledged: bool  # the run named this location: it goes ahead

    @property
    def percent(self) -> str:
        """The share in percent, to one decimal where needed (101 of 200 is 50.5%, never a rounded 50%)."""
        return f"{100 * self.due / self.total:.1f}".removesuffix(".0")

    def as_dict(self) -> dict[str, Any]:
        """Counts only: what the ledger and the plan's output record."""
        return {"location": self.location, "due": self.due, "total": self.total, "acknowledged": self.acknowledged}

    def sentence(self, share: float) -> str:
        """The location, its share and the threshold, as the plan, the report and a refusal say them."""
        return (f"{self.location}: {self.due:,} of its {self.total:,} records ({self.percent}%) due at once, "
                f"more than the {share:.0%} a run may make due without acknowledging the location")

    def outcome(self, share: float, dry_run: bool = False) -> str:
        if self.acknowledged:
            return self.sentence(share) + "; acknowledged by the run"
        return self.sentence(share) + ("; not acknowledged: a run would delete nothing there" if dry_run
                                       else "; refused: nothing deleted there")


@dataclass(frozen=True)
class Plan:
    run_id: str
    dry_run: bool
    locations: dict[str, list[str]]  # every registered store kind -> its location ids with work to do
    tasks: int
    skipped: int
    estimated: int
    mass_deletions: tuple[MassDeletion, ...] = ()
    # records estimated due per location with work planned: how many shards each gets (``engine.shards``)
    due_by_location: dict[str, int] = field(default_factory=dict)

    @property
    def refused(self) -> list[MassDeletion]:
        return [m for m in self.mass_deletions if not m.acknowledged]


def plan_sweep(ctx: SweepContext, at: pendulum.DateTime, *, dry_run: bool, actor: str,
               dag_id: str | None = None, airflow_run_id: str | None = None,
               acknowledged: Collection[str] = ()) -> Plan:
    """Plan a sweep. ``acknowledged``: locations the run may delete a large share of (see MassDeletionPolicy)."""
    acknowledged = check_acknowledged(ctx, acknowledged)  # before any store is touched
    holds = ctx.ledger.resolver_holds()
    rows = [row for location_id in ctx.inventory.locations for row in _plan_location(ctx, location_id, at, holds)]
    mass = mass_deletions(rows, ctx.mass_deletion, acknowledged)
    rows = refuse_unacknowledged(rows, mass, ctx.mass_deletion)
    run_id = ctx.ledger.start_run("sweep", dry_run=dry_run, as_of=at, rules_digest=ctx.ruleset.digest,
                                  dag_id=dag_id, airflow_run_id=airflow_run_id, actor=actor)
    with ctx.ledger.session() as s:
        ctx.record_registry(run_id, actor=actor, session=s)
        ctx.ledger.add_planned_tasks(run_id, rows, session=s)
        working = [r for r in rows if r["skip_reason"] is None]
        tasks, skipped = len(working), len(rows) - len(working)
        estimated = sum(r["estimated_count"] or 0 for r in working)
        summary = {"tasks": tasks, "skipped": skipped, "estimated": estimated, "plan_sha256": digest(rows)}
        policy = {"share": str(ctx.mass_deletion.share), "min_records": ctx.mass_deletion.min_records}
        ctx.ledger.append("run.planned", {**summary, "mass_deletion": [m.as_dict() for m in mass],
                                          "mass_deletion_policy": policy}, actor=actor, run_id=run_id, session=s)
    log_step("run.planned", run_id=run_id, kind="sweep", dry_run=dry_run, **summary)
    for m in mass:
        log_step("plan.mass_deletion", run_id=run_id, **m.as_dict())
    busy: dict[str, int] = {}
    for r in working:
        busy[r["location"]] = busy.get(r["location"], 0) + (r["estimated_count"] or 0)
    kinds: dict[str, list[str]] = {name: [] for name in KINDS}
    for location_id, spec in ctx.inventory.locations.items():
        if location_id in busy:
            kinds[spec.kind].append(location_id)
    return Plan(run_id, dry_run, kinds, tasks, skipped, estimated, tuple(mass), busy)


def check_acknowledged(ctx: SweepContext, acknowledged: Collection[str]) -> frozenset[str]:
    """A misspelt location would acknowledge nothing while looking like consent: refuse it whole."""
    if isinstance(acknowledged, str):
        raise ValueError("acknowledge_mass_deletion: expected a list of location ids, not one string")
    unknown = sorted(set(acknowledged) - set(ctx.inventory.locations))
    if unknown:
        raise ValueError(f"acknowledge_mass_deletion: no location {', '.join(map(repr, unknown))} in "
                         f"the inventory (systems.yaml); known: {', '.join(sorted(ctx.inventory.locations))}")
    return frozenset(acknowledged)


def mass_deletions(rows: list[dict[str, Any]], policy: MassDeletionPolicy,
                   acknowledged: frozenset[str]) -> list[MassDeletion]:
    """Per location, the records the plan makes due against all records of registered accounts there (the
    planner counted both already: ``total_count`` of every row, ``estimated_count`` of the working ones)."""
    due: dict[str, int] = {}
    total: dict[str, int] = {}
    for row in rows:
        total[row["location"]] = total.get(row["location"], 0) + (row["total_count"] or 0)
        if row["skip_reason"] is None:
            due[row["location"]] = due.get(row["location"], 0) + (row["estimated_count"] or 0)
    return [MassDeletion(location, due.get(location, 0), count, location in acknowledged)
            for location, count in total.items() if policy.applies(due.get(location, 0), count)]


def refuse_unacknowledged(rows: list[dict[str, Any]], mass: list[MassDeletion],
                          policy: MassDeletionPolicy) -> list[dict[str, Any]]:
    """The tasks of a refused location are planned as kept, so no executor (a DAG task, a cleared retry,
    ``retention sweep --resume``) can run them: the refusal is in the persisted plan, before any delete."""
    refused = {m.location: f"mass deletion refused: {m.sentence(policy.share)}" for m in mass if not m.acknowledged}
    return [{**row, "action": "keep", "estimated_count": 0, "skip_reason": refused[row["location"]]}
            if row["location"] in refused and row["skip_reason"] is None else row for row in rows]


TERMINATED = ("terminated, customer elected {choice}: its data goes by its offboarding (approved by a second person, "
              "certified), not by the sweep; offboarding due by {due}")


def sweep_step(decision: Decision, account: Account) -> Step | Skip:
    """What the sweep does with one data class of one account: the rule's step, except that the sweep never
    deletes a terminated account wholesale (a DPO expects every termination to end in an approved, certified
    offboarding; ``engine.overdue`` reports one that has not started by this due date). Record-anchored
    rules (logs, the isolated copies kept under law) still apply to it, as to any account."""
    if account.state is AccountState.TERMINATED and decision.anchor.is_account_event and not decision.blocked_by:
        due = decision.due_at.to_date_string() if decision.due_at else "its termination"
        return Skip(TERMINATED.format(choice=account.election.choice.value if account.election else "none", due=due))
    return step_for(decision)


def _plan_location(ctx: SweepContext, location_id: str, at: pendulum.DateTime,
                   holds: list[LegalHold]) -> list[dict[str, Any]]:
    """One row per account with records here: its step (or why it is kept) and its counts, all counted by ONE
    ``store.tally`` for the location, whatever the number of accounts."""
    spec = ctx.inventory.locations[location_id]
    decided = {account.id: (account, resolve(ctx.ruleset, account, spec.data_class, at, holds))
               for account in ctx.accounts.values()}
    steps = {account_id: sweep_step(decision, account) for account_id, (account, decision) in decided.items()}
    tallied = ctx.store(location_id).tally(list(decided), [
        due_of(step) for step in steps.values() if isinstance(step, Step)])
    rows = []
    for account_id, (_, decision) in decided.items():
        tally = tallied.get(account_id)
        if tally is None or tally.total == 0:
            continue  # nothing of this account here: nothing to plan, keep or report
        step = steps[account_id]
        if isinstance(step, Skip):
            action, selector, estimated, skip_reason = "keep", None, 0, step.reason
        else:
            action, selector, estimated, skip_reason = step.action, step.selector, tally.due, None
        rows.append({
            "account_id": account_id, "data_class": spec.data_class, "location": location_id,
            "action": action, "rule_id": decision.rule_id,
            "anchor": selector.anchor if selector else None, "cutoff": selector.cutoff if selector else None,
            "total_count": tally.total, "estimated_count": estimated, "skip_reason": skip_reason,
        })
    return rows


def due_of(step: Step) -> Due:
    """What a step asks a store to count: its selector's records (for an anonymize step, only those not yet
    anonymized: anonymized rows stay in place)."""
    return Due(step.selector, **count_mode(step.action))


def digest(rows: list[dict[str, Any]]) -> str:
    """Ties the persisted plan to the hash chain: any later edit of a planned task is detectable."""
    canonical = [{**row, "cutoff": iso_utc(row["cutoff"]) if row["cutoff"] else None} for row in rows]
    return hashlib.sha256(canonical_json(sorted(canonical, key=canonical_json)).encode()).hexdigest()
