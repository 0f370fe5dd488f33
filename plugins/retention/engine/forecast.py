"""What the daily sweep will delete or anonymize over the coming days, and why: per day, data class,
account and location, the records that become due that day, with the rule, its cutoff and its basis.

Day 0 is what the next sweep finds due already. Each later day counts the records that fall due that
day and not before: a record-anchored rule moves its cutoff one day a day. Legal holds in force now hold
for the whole forecast. A terminated account is offboarded (approved, certified), never swept wholesale:
its data is not in the lines; the forecast lists instead the terminations whose offboarding has not
started, those overdue already and those falling due within the forecast's days.
Counts come from the stores as they are now: data written later is not forecast. Read-only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import pendulum

from retention.engine.context import SweepContext
from retention.engine.overdue import Termination, awaiting_offboarding
from retention.engine.planner import due_of, sweep_step
from retention.engine.steplog import Progress, quietly
from retention.engine.steps import Step
from retention.ledger.chain import iso_utc
from retention.rules import Decision, LegalHold, parse_utc, resolve
from retention.stores import Due as StoreDue

MAX_DAYS = 366


@dataclass(frozen=True)
class Due:
    day: str  # ISO date of the sweep
    data_class: str
    account_id: str
    location: str
    action: str  # delete | anonymize
    records: int
    rule_id: str
    cutoff: str | None  # records whose anchor is at or before this instant; None: all of the account's
    why: str


class Forecast(list[Due]):
    """The forecast's lines (``Due``, a list as before), and the terminations awaiting their offboarding
    that are overdue at the start or fall due within the forecast's days (``terminations``)."""

    def __init__(self, lines: list[Due], terminations: list[Termination]) -> None:
        super().__init__(lines)
        self.terminations = terminations


def forecast(ctx: SweepContext, start: pendulum.DateTime, days: int, progress: Progress = quietly) -> Forecast:
    if not 0 < days <= MAX_DAYS:
        raise ValueError(f"days must be from 1 to {MAX_DAYS}, got {days}")
    holds = ctx.ledger.resolver_holds()
    found = [due for location_id in progress(list(ctx.inventory.locations), "counting")
             for due in _location(ctx, location_id, start, days, holds)]
    end = start.add(days=days)
    terminations = [t for t in awaiting_offboarding(ctx, start) if t.overdue or parse_utc(t.due_at) <= end]
    return Forecast(sorted(found, key=lambda d: (d.day, d.data_class, d.account_id, d.location)), terminations)


def by_day(lines: list[Due]) -> dict[str, dict[str, int]]:
    """Records per day and data class: the chart's series."""
    totals: dict[str, dict[str, int]] = {}
    for line in lines:
        day = totals.setdefault(line.day, {})
        day[line.data_class] = day.get(line.data_class, 0) + line.records
    return totals


def as_document(lines: list[Due], days: int) -> dict[str, Any]:
    """The forecast as the CLI's --json and the API answer it: the chart's series, every line, and the
    terminations whose offboarding has not started (overdue already, or due within the days)."""
    terminations = getattr(lines, "terminations", [])
    return {"days": days, "by_day": by_day(lines), "lines": [asdict(line) for line in lines],
            "overdue_terminations": [t.as_dict() for t in terminations if t.overdue],
            "terminations_due": [t.as_dict() for t in terminations if not t.overdue]}


def _location(ctx: SweepContext, location_id: str, start: pendulum.DateTime, days: int,
              holds: list[LegalHold]) -> list[Due]:
    """The location's lines: per day, one ``store.tally`` of the accounts whose step changed since their last
    count (a record-anchored cutoff moves every day; an account event's step changes once) and that still
    have records not yet due. Day 0 counts every account and gives the totals."""
    spec = ctx.inventory.locations[location_id]
    store = ctx.store(location_id)
    totals: dict[str, int] | None = None
    already: dict[str, int] = {}  # per account, its records due by the days counted so far
    counted: dict[str, StoreDue] = {}  # per account, what its last count was for
    found = []
    for day in range(days + 1):
        at = start.add(days=day)
        accounts = [a for a in ctx.accounts.values()
                    if totals is None or already.get(a.id, 0) < totals.get(a.id, 0)]  # the rest is due already
        steps: dict[str, tuple[Decision, Step]] = {}
        for account in accounts:
            decision = resolve(ctx.ruleset, account, spec.data_class, at, holds)
            step = sweep_step(decision, account)  # the planner's own choice: a terminated account is not swept
            if isinstance(step, Step) and counted.get(account.id) != due_of(step):
                steps[account.id] = (decision, step)
        if totals is not None and not steps:
            continue
        asked = [a.id for a in accounts] if totals is None else list(steps)
        tallied = store.tally(asked, [due_of(step) for _, step in steps.values()])
        if totals is None:
            totals = {account_id: tally.total for account_id, tally in tallied.items()}
        for account_id, (decision, step) in steps.items():
            counted[account_id] = due_of(step)
            due = tallied[account_id].due if account_id in tallied else 0
            if due > already.get(account_id, 0):
                found.append(Due(at.to_date_string(), spec.data_class, account_id, location_id, step.action,
                                 due - already.get(account_id, 0), decision.rule_id,
                                 iso_utc(step.selector.cutoff) if step.selector.cutoff else None, _why(decision)))
                already[account_id] = due
    return found


def _why(decision: Decision) -> str:
    after = f"{decision.retain_for} after {decision.anchor.value}"
    return f"{decision.rule_id}: {after} ({decision.basis.citation})"
