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

from collections.abc import Collection
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
from retention.stores import Store

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


def forecast(ctx: SweepContext, start: pendulum.DateTime, days: int, progress: Progress = quietly, *,
             ignore_holds: Collection[str] = ()) -> Forecast:
    """The forecast from ``start`` over ``days``; holds whose ids are in ``ignore_holds`` count as not in
    force (what would fall due if they were released)."""
    if not 0 < days <= MAX_DAYS:
        raise ValueError(f"days must be from 1 to {MAX_DAYS}, got {days}")
    holds = [hold for hold in ctx.ledger.resolver_holds() if hold.id not in ignore_holds]
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


Scheduled = tuple[Decision, Step] | None  # one account's step on one day (None: its data is kept that day)


def _location(ctx: SweepContext, location_id: str, start: pendulum.DateTime, days: int,
              holds: list[LegalHold]) -> list[Due]:
    """The location's lines: each account's step on each day (as the planner would choose it), counted with
    as few ``store.tally`` calls as the counts allow (``_due_by_day``)."""
    spec = ctx.inventory.locations[location_id]
    moments = [start.add(days=day) for day in range(days + 1)]
    schedule: dict[str, list[Scheduled]] = {}
    for account in ctx.accounts.values():
        steps: list[Scheduled] = []
        for at in moments:
            decision = resolve(ctx.ruleset, account, spec.data_class, at, holds)
            step = sweep_step(decision, account)  # the planner's own choice: a terminated account is not swept
            steps.append((decision, step) if isinstance(step, Step) else None)
        schedule[account.id] = steps
    due = _due_by_day(ctx.store(location_id), schedule)
    found = []
    for account_id, steps in schedule.items():
        already = 0  # its records due by the days seen so far
        for day, scheduled in enumerate(steps):
            if scheduled is None or due[account_id, day] <= already:
                continue
            decision, step = scheduled
            found.append(Due(moments[day].to_date_string(), spec.data_class, account_id, location_id, step.action,
                             due[account_id, day] - already, decision.rule_id,
                             iso_utc(step.selector.cutoff) if step.selector.cutoff else None, _why(decision)))
            already = due[account_id, day]
    return found


def _due_by_day(store: Store, schedule: dict[str, list[Scheduled]]) -> dict[tuple[str, int], int]:
    """Per (account, day with a step): the records its step matches, from a few tallies.

    Within a run of days on which an account's step keeps its rule, action and anchor and its cutoff only
    moves later, the count can only grow; so where it is the same at both ends of a stretch it is the same
    on every day between, and only stretches whose ends differ are halved and counted at their middle. Each
    round counts every day some account needs with ONE tally for all of them.
    """
    known: dict[tuple[str, int], int] = {}
    stretches = [(account_id, first, last) for account_id, steps in schedule.items() for first, last in _runs(steps)]
    while stretches:
        wanted: dict[int, dict[str, StoreDue]] = {}
        for account_id, first, last in stretches:
            for day in (first, last):
                if (account_id, day) not in known:
                    wanted.setdefault(day, {})[account_id] = due_of(_step_on(schedule, account_id, day))
        for day, dues in sorted(wanted.items()):
            tallied = store.tally(list(dues), list(dues.values()))
            for account_id in dues:
                known[account_id, day] = tallied[account_id].due if account_id in tallied else 0
        stretches = [half for account_id, first, last in stretches
                     if known[account_id, first] != known[account_id, last] and last - first > 1
                     for half in ((account_id, first, (first + last) // 2), (account_id, (first + last) // 2, last))]
    due: dict[tuple[str, int], int] = {}
    for account_id, steps in schedule.items():
        for first, last in _runs(steps):
            value = known[account_id, first]
            for day in range(first, last + 1):  # a day not counted lies between two counted days that agree
                value = known.get((account_id, day), value)
                due[account_id, day] = value
    return due


def _runs(steps: list[Scheduled]) -> list[tuple[int, int]]:
    """(first, last) day of each run of days whose steps count monotonically: same rule, action and anchor,
    the cutoff never earlier than the day before."""
    runs: list[tuple[int, int]] = []
    first: int | None = None
    for day, scheduled in enumerate(steps):
        previous = steps[day - 1] if day else None
        if first is not None and not (scheduled is not None and _continues(previous, scheduled)):
            runs.append((first, day - 1))
            first = None
        if scheduled is not None and first is None:
            first = day
    if first is not None:
        runs.append((first, len(steps) - 1))
    return runs


def _continues(previous: Scheduled, scheduled: tuple[Decision, Step]) -> bool:
    if previous is None:
        return False
    (before, was), (now, step) = previous, scheduled
    if (before.rule_id, was.action, was.selector.anchor) != (now.rule_id, step.action, step.selector.anchor):
        return False
    earlier, later = was.selector.cutoff, step.selector.cutoff
    return earlier is None or (later is not None and later >= earlier)


def _step_on(schedule: dict[str, list[Scheduled]], account_id: str, day: int) -> Step:
    scheduled = schedule[account_id][day]
    if scheduled is None:  # runs hold only days with a step
        raise LookupError(f"account {account_id} has no step on day {day}")
    return scheduled[1]


def _why(decision: Decision) -> str:
    after = f"{decision.retain_for} after {decision.anchor.value}"
    return f"{decision.rule_id}: {after} ({decision.basis.citation})"
