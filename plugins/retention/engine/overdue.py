"""Terminations whose offboarding is overdue: the sweep never deletes a terminated account wholesale
(see ``planner.sweep_step``), so a termination nobody offboards would keep its data forever, and its
customer would never get a certificate. This module finds them, from the account registry and the ledger.

A termination's offboarding is **due** when its data would have fallen due under its terminated-state
rules: the end of the shortest grace period an account-event rule gives it (e.g. 30 days after
``terminated_at``), or the termination itself if no rule anchors on it. It is **started** once an
offboarding run for the account is in the ledger (``plan_offboarding`` records the account in the run's
``offboarding.requested`` event), unless that run was rejected by its approver, superseded by a retried
plan, or failed (residue or unfinished work refused its certificate, and a failed run deletes nothing more):
none of them ends in a certificate, so the termination is overdue again until a new offboarding starts.
Overdue: due, and not started. Legal holds do not excuse it: the offboarding keeps what is held and says so on
the certificate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import pendulum

from retention.engine.context import SweepContext
from retention.engine.steplog import log_step
from retention.ledger import Ledger
from retention.ledger.chain import iso_utc
from retention.rules import Account, AccountState, resolve

# The event plan_offboarding writes first in every offboarding run (retention.offboarding.plan.PLANNED;
# the engine does not import the offboarding package, which builds on it; a test keeps the two equal).
REQUESTED = "offboarding.requested"
NOT_STARTED = ("rejected", "superseded", "failed")  # run statuses of an offboarding that will never certify anything
CHECKED = "terminations.checked"


@dataclass(frozen=True)
class Termination:
    account_id: str
    choice: str  # the customer's election: delete | return
    terminated_at: str
    due_at: str  # when the offboarding should have started at the latest
    overdue: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def awaiting_offboarding(ctx: SweepContext, at: pendulum.DateTime) -> list[Termination]:
    """Every terminated account with no offboarding started, soonest due first; ``overdue`` as of ``at``."""
    started = offboarded_accounts(ctx.ledger)
    found = []
    for account in ctx.accounts.values():
        if account.state is not AccountState.TERMINATED or account.id in started:
            continue
        due = due_at(ctx, account, at)
        found.append(Termination(account.id, account.election.choice.value if account.election else "none",
                                 iso_utc(terminated_at(account)), iso_utc(due), at >= due))
    return sorted(found, key=lambda t: (t.due_at, t.account_id))


def overdue_terminations(ctx: SweepContext, at: pendulum.DateTime) -> list[Termination]:
    return [t for t in awaiting_offboarding(ctx, at) if t.overdue]


def due_at(ctx: SweepContext, account: Account, at: pendulum.DateTime) -> pendulum.DateTime:
    """The earliest moment any of the account's data would fall due under its terminated-state rules."""
    dates = []
    for data_class in sorted({spec.data_class for spec in ctx.inventory.locations.values()}):
        decision = resolve(ctx.ruleset, account, data_class, at)  # no holds: a hold does not defer the offboarding
        if decision.anchor.is_account_event and decision.due_at is not None:
            dates.append(decision.due_at)
    return min(dates, default=terminated_at(account))


def terminated_at(account: Account) -> pendulum.DateTime:
    """When a terminated account's contract ended (the account registry refuses a terminated one without it)."""
    if account.terminated_at is None:
        raise ValueError(f"account {account.id} is terminated but the registry gives no terminated_at")
    return account.terminated_at


def offboarded_accounts(ledger: Ledger) -> set[str]:
    """Accounts with an offboarding run in the ledger that was not rejected, superseded or failed.

    One read of two event kinds through Ledger's public reader; the ledger has no query for it."""
    requested: dict[str, str] = {}
    ended: set[str] = set()
    for event in ledger.events_of_kind(REQUESTED, "run.finished"):
        if event.run_id is None:
            continue
        if event.kind == REQUESTED:
            requested[event.run_id] = event.payload["account_id"]
        elif event.payload.get("kind") == "offboarding" and event.payload.get("status") in NOT_STARTED:
            ended.add(event.run_id)
    return {account_id for run_id, account_id in requested.items() if run_id not in ended}


def record_check(ctx: SweepContext, run_id: str | None, at: pendulum.DateTime, *, actor: str) -> list[Termination]:
    """Check as of ``at`` and record the result in the ledger: account ids and due dates only."""
    overdue = overdue_terminations(ctx, at)
    ctx.ledger.append(CHECKED, {"as_of": iso_utc(at), "overdue": [
        {"account_id": t.account_id, "due_at": t.due_at} for t in overdue]}, actor=actor, run_id=run_id)
    log_step(CHECKED, run_id=run_id, overdue=len(overdue))
    for t in overdue:
        log_step("termination.overdue", run_id=run_id, account_id=t.account_id, due_at=t.due_at)
    return overdue


def describe(overdue: list[Termination]) -> str:
    """One sentence on-call reads in the failed task's log and the CLI prints."""
    listed = "; ".join(f"{t.account_id} (terminated {t.terminated_at[:10]}, elected {t.choice}, offboarding due "
                       f"{t.due_at[:10]})" for t in overdue)
    return (f"{len(overdue)} termination(s) overdue, no offboarding started: {listed}. Start each one's "
            "termination_offboarding (or `retention offboard ACCOUNT`): the sweep does not delete a terminated account")
