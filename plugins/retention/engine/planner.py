"""Decisions x inventory -> a persisted plan: one task per account x data class x location, with counts.

Everything is validated before anything is planned: rules, inventory and accounts load whole or the
run stops with file:line:field, and no store is touched.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

import pendulum

from retention.engine.steplog import log_step
from retention.engine.steps import Skip, count_mode, step_for
from retention.ledger import Ledger
from retention.ledger.chain import canonical_json, iso_utc
from retention.rules import Account, RuleSet, load_accounts, load_ruleset, resolve
from retention.rules.inventory import S3Location, SqlLocation, SystemsFile, load_inventory
from retention.settings import Settings
from retention.stores import Selector, Store, open_store


@dataclass
class SweepContext:
    ruleset: RuleSet
    inventory: SystemsFile
    accounts: dict[str, Account]
    ledger: Ledger
    open_store: Callable[[str, SqlLocation | S3Location], Store] = field(default=open_store)

    @classmethod
    def load(cls, settings: Settings, ledger: Ledger, **kwargs) -> "SweepContext":
        ruleset = load_ruleset(settings.rules_dir)
        inventory = load_inventory(settings.systems_file, ruleset)
        if settings.accounts_file is None:
            raise ValueError("no account registry: set RETENTION_ACCOUNTS_FILE")
        accounts = load_accounts(settings.accounts_file, set(ruleset.jurisdictions.jurisdictions))
        return cls(ruleset, inventory, accounts, ledger, **kwargs)

    def store(self, location_id: str) -> Store:
        return self.open_store(location_id, self.inventory.locations[location_id])


@dataclass(frozen=True)
class Plan:
    run_id: str
    dry_run: bool
    locations: dict[str, list[str]]  # store kind -> location ids with work to do
    tasks: int
    skipped: int
    estimated: int


def plan_sweep(ctx: SweepContext, at: pendulum.DateTime, *, dry_run: bool, actor: str,
               dag_id: str | None = None, airflow_run_id: str | None = None) -> Plan:
    holds = ctx.ledger.resolver_holds()
    rows = [row for location_id in ctx.inventory.locations for row in _plan_location(ctx, location_id, at, holds)]
    run_id = ctx.ledger.start_run("sweep", dry_run=dry_run, as_of=at, rules_digest=ctx.ruleset.digest,
                                  dag_id=dag_id, airflow_run_id=airflow_run_id, actor=actor)
    with ctx.ledger.session() as s:
        for row in rows:
            ctx.ledger.add_planned_task(run_id, **row, session=s)
        working = [r for r in rows if r["skip_reason"] is None]
        summary = {"tasks": len(working), "skipped": len(rows) - len(working),
                   "estimated": sum(r["estimated_count"] or 0 for r in working), "plan_sha256": digest(rows)}
        ctx.ledger.append("run.planned", summary, actor=actor, run_id=run_id, session=s)
    log_step("run.planned", run_id=run_id, kind="sweep", dry_run=dry_run, **summary)
    busy = {r["location"] for r in working}
    kinds: dict[str, list[str]] = {"sql": [], "s3": []}
    for location_id, spec in ctx.inventory.locations.items():
        if location_id in busy:
            kinds[spec.kind].append(location_id)
    return Plan(run_id, dry_run, kinds, summary["tasks"], summary["skipped"], summary["estimated"])


def _plan_location(ctx: SweepContext, location_id: str, at: pendulum.DateTime, holds) -> list[dict]:
    spec = ctx.inventory.locations[location_id]
    store = ctx.store(location_id)
    rows = []
    for account in ctx.accounts.values():
        decision = resolve(ctx.ruleset, account, spec.data_class, at, holds)
        step = step_for(decision)
        total = store.count(Selector(account.id))
        if total == 0:
            continue  # nothing of this account here: nothing to plan, keep or report
        selector = None if isinstance(step, Skip) else step.selector
        rows.append({
            "account_id": account.id, "data_class": spec.data_class, "location": location_id,
            "action": "keep" if selector is None else step.action, "rule_id": decision.rule_id,
            "anchor": selector.anchor if selector else None, "cutoff": selector.cutoff if selector else None,
            "total_count": total, "estimated_count": due_count(store, step, total) if selector else 0,
            "skip_reason": step.reason if isinstance(step, Skip) else None,
        })
    return rows


def due_count(store: Store, step, total: int) -> int:
    """Records the step acts on, given the account's total in this store."""
    # Deleting all of an account's data: the due count is the total already counted (no second listing).
    if step.selector.anchor is None and step.action == "delete":
        return total
    return store.count(step.selector, **count_mode(step.action))


def digest(rows: list[dict]) -> str:
    """Ties the persisted plan to the hash chain: any later edit of a planned task is detectable."""
    canonical = [{**row, "cutoff": iso_utc(row["cutoff"]) if row["cutoff"] else None} for row in rows]
    return hashlib.sha256(canonical_json(sorted(canonical, key=canonical_json)).encode()).hexdigest()
