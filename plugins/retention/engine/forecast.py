"""What the daily sweep will delete or anonymize over the coming days, and why: per day, data class,
account and location, the records that become due that day, with the rule, its cutoff and its basis.

Day 0 is what the next sweep finds due already. Each later day counts the records that fall due that
day and not before: a record-anchored rule moves its cutoff one day a day. A legal hold holds on the days it
is in force (from now: every day, for each hold in force now). A terminated account is offboarded (approved,
certified), never swept wholesale: its data is not in the lines; the forecast lists instead the terminations
whose offboarding has not started, those overdue already and those falling due within the forecast's days.
Counts come from the stores as they are now: data written later is not forecast. Read-only.

How it counts, per location, without a question per account and day:

- Decided once per account and data class (shared per decision profile, below), not per day. ``resolve`` depends on
  its instant only through the cutoff (``rules.resolver._cutoff`` of the rule and period, which the instant does not
  change) and through the holds in force (``LegalHold.applies``); rule, action, anchor, period, the account's event
  and election do not depend on it. Holds change only on the days a hold's ``placed_at`` or ``released_at`` falls in
  (none, for a forecast from now): the account is resolved on the first day and on each of those, and on every other
  day its decision is that one with the day's cutoff (``rules.resolver.cutoff_series``, computed once per rule and
  period for all accounts). The planner's own ``sweep_step`` then chooses the step from that decision, as the sweep
  would: a record-anchored step keeps its action and anchor and moves its cutoff day by day; an account-event step
  (terminated_at, contract_end: all of the account's data) starts on the one day its event is at or before the cutoff,
  found by bisection (cutoffs never move earlier), and a terminated account's stays kept (``sweep_step``'s rule).
- Decided once per decision profile, not per account: accounts whose decisions for a data class can differ only
  by their id and their anchor event (``_Schedules._profile`` lists what ``resolve`` reads from an account; an
  account that a contract override or a legal hold names is a profile of its own) and whose anchor events fall
  due on the same days share one plan, resolved and stepped for the first of them; each account's schedule is
  its id and that plan.
- Counted once per location. One ``store.histogram`` call answers, for every account with a step, at which of
  its days' cutoffs its records fall due (one grouped statement per anchor in SQL, one listing or SCAN pass
  elsewhere), judged exactly as ``store.tally`` judges one cutoff; a day's line holds the records that fall due
  that day and not before. Several locations are counted at once, in threads (each mostly waits on its own
  database or endpoint); the stores are opened one at a time before.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from itertools import pairwise
from operator import attrgetter
from typing import Any

import pendulum

from retention.engine.context import SweepContext
from retention.engine.overdue import Termination, awaiting_offboarding
from retention.engine.planner import due_of, sweep_step
from retention.engine.steplog import Progress, quietly
from retention.engine.steps import Step
from retention.ledger.chain import iso_utc
from retention.rules import Account, Decision, LegalHold, parse_utc, resolve
from retention.rules.durations import IsoDuration
from retention.rules.model import AccountState, Anchor, Election
from retention.rules.resolver import cutoff_series
from retention.stores.base import Cutoffs, DueSeries, Histogram

MAX_DAYS = 366
COUNTING_THREADS = 4  # locations counted at once: each mostly waits on its database or endpoint


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
    schedules = _Schedules(ctx, [start.add(days=day) for day in range(days + 1)], holds)
    locations = list(ctx.inventory.locations)
    stores = {location_id: ctx.store(location_id) for location_id in locations}  # opened one at a time
    scheduled = {location_id: _scheduled(ctx, location_id, schedules) for location_id in locations}
    with ThreadPoolExecutor(COUNTING_THREADS) as pool:
        counting = {location_id: pool.submit(stores[location_id].histogram,
                                             [schedule.series() for schedule in scheduled[location_id].values()])
                    for location_id in locations}
        found = [due for location_id in progress(locations, "counting")
                 for due in _lines(ctx, location_id, schedules, scheduled[location_id],
                                   counting[location_id].result())]
    end = start.add(days=days)
    terminations = [t for t in awaiting_offboarding(ctx, start) if t.overdue or parse_utc(t.due_at) <= end]
    return Forecast(sorted(found, key=attrgetter("day", "data_class", "account_id", "location")), terminations)


def by_day(lines: list[Due]) -> dict[str, dict[str, int]]:
    """Records per day and data class: the chart's series."""
    totals: dict[str, dict[str, int]] = {}
    for line in lines:
        day = totals.setdefault(line.day, {})
        day[line.data_class] = day.get(line.data_class, 0) + line.records
    return totals


def as_document(lines: list[Due], days: int, *, with_lines: bool = True) -> dict[str, Any]:
    """The forecast as the CLI's --json and the API answer it: the chart's series, every line (none with
    ``with_lines=False``), and the terminations whose offboarding has not started (overdue already, or due within
    the days)."""
    terminations = getattr(lines, "terminations", [])
    return {"days": days, "by_day": by_day(lines), "lines": [asdict(line) for line in lines] if with_lines else [],
            "overdue_terminations": [t.as_dict() for t in terminations if t.overdue],
            "terminations_due": [t.as_dict() for t in terminations if not t.overdue]}


# data class, state, jurisdiction, instructions, election's choice, the account id where an override or a hold
# names it
_Profile = tuple[str, AccountState, str, tuple[tuple[str, IsoDuration], ...], Election | None, str | None]


@dataclass(frozen=True)
class _Plan:
    """A step for one data class on the days it has one (on the others the data is kept), shared by the accounts of
    one decision profile whose anchor events fall due on the same days."""

    decision: Decision  # as resolved for the first of those days (for the first account of the plan)
    step: Step  # the planner's step on that day; on later days only a record-anchored step's cutoff moves
    days: tuple[int, ...]  # the days with a step, earliest first
    cutoffs: Cutoffs | None  # a record-anchored step's cutoff on each of those days; None: all of the account's
    why: str  # the rule, its period and basis, as the lines write it


@dataclass(frozen=True)
class _Schedule:
    """One account's plan for one data class."""

    account_id: str
    plan: _Plan

    def series(self) -> DueSeries:
        return DueSeries(self.account_id, self.plan.step.selector.anchor, self.plan.cutoffs,
                         due_of(self.plan.step).pending_anonymize)


@dataclass(frozen=True)
class _Facts:
    """What one profile's decision is on every day alike: its account-event anchor (None: record-anchored) and
    its rule's and period's cutoff on every day."""

    event: Anchor | None
    cutoffs: tuple[pendulum.DateTime, ...]


class _Schedules:
    """Each account's schedule per data class over the forecast's days, decided once and shared by the data
    class's locations; decided once per profile and due days, the cutoff series computed once per rule and
    period (module docstring)."""

    def __init__(self, ctx: SweepContext, moments: list[pendulum.DateTime], holds: list[LegalHold]) -> None:
        self.moments = moments
        self.day_names = [moment.to_date_string() for moment in moments]
        self._written: dict[tuple[Cutoffs, int], str] = {}  # a cutoff as the lines write it, once per series
        self._ctx = ctx
        self._holds = holds
        self._segments = [0, *_hold_changes(moments, holds), len(moments)]
        self._begins = tuple(self._segments[:-1])
        self._cutoffs: dict[tuple[str, IsoDuration], tuple[tuple[pendulum.DateTime, ...], Cutoffs]] = {}
        # (account id, data class or None: every class) named by a contract override or by a legal hold: the
        # decisions that can differ by account id beyond its own fields (see _profile)
        self._named = ({(override.account_id, override.data_class) for override in ctx.ruleset.overrides}
                       | {(hold.account_id, hold.data_class) for hold in holds if hold.account_id is not None})
        self._facts: dict[_Profile, _Facts] = {}
        # (profile, no anchor event, the day each hold segment's step starts) -> the plan, None: kept every day
        self._plans: dict[tuple[_Profile, bool, tuple[int, ...]], _Plan | None] = {}

    def of(self, account: Account, data_class: str) -> _Schedule | None:
        """The account's schedule: the plan of its profile and of the days its anchor event falls due on. Two
        accounts of one profile with the same such days get the same decisions but for their ids and events, and
        ``sweep_step`` the same steps but for the ids (it reads the state, in the profile, and whether the event
        is missing or at or before the day's cutoff, in the key)."""
        profile = self._profile(account, data_class)
        facts = self._facts.get(profile) or self._facts.setdefault(profile, self._facts_of(profile, account))
        anchor_time = account.event(facts.event) if facts.event is not None else None
        starts = self._begins if anchor_time is None else tuple(  # per hold segment, the first day it is due
            bisect_left(facts.cutoffs, anchor_time, begin, end) for begin, end in pairwise(self._segments))
        key = (profile, anchor_time is None, starts)
        if key not in self._plans:
            self._plans[key] = self._plan(account, data_class)
        plan = self._plans[key]
        return None if plan is None else _Schedule(account.id, plan)

    def _facts_of(self, profile: _Profile, account: Account) -> _Facts:
        decision = resolve(self._ctx.ruleset, account, profile[0], self.moments[0], self._holds)
        return _Facts(decision.anchor if decision.anchor.is_account_event else None, self._series(decision)[0])

    def _plan(self, account: Account, data_class: str) -> _Plan | None:
        first: tuple[Decision, Step] | None = None
        days: list[int] = []
        for begin, end in pairwise(self._segments):  # the holds in force are the same on every day of a segment
            decision = resolve(self._ctx.ruleset, account, data_class, self.moments[begin], self._holds)
            cutoffs, _ = self._series(decision)
            starts = begin
            if decision.anchor.is_account_event and decision.anchor_time is not None:
                starts = bisect_left(cutoffs, decision.anchor_time, begin, end)  # the first day it is due
            if starts == end:
                continue
            on_day = replace(decision, at=self.moments[starts], cutoff=cutoffs[starts])  # what resolve gives then
            step = sweep_step(on_day, account)
            if isinstance(step, Step):
                first = first or (on_day, step)
                days += range(starts, end)
        if first is None:
            return None
        decision, step = first
        if step.selector.anchor is None:
            return _Plan(decision, step, tuple(days), None, _why(decision))
        every_day, shared = self._series(decision)
        if len(days) < len(self.moments):  # held on some days: a series of its own
            shared = Cutoffs(tuple(every_day[day] for day in days))
        return _Plan(decision, step, tuple(days), shared, _why(decision))

    def _profile(self, account: Account, data_class: str) -> _Profile:
        """What ``resolve`` reads from the account for this data class, but its id and its anchor event: accounts
        of one profile get one decision but for those two. ``resolve`` reads the state and jurisdiction
        (``select_rule``), every instruction (``_refuse_bad_instructions`` checks them all; ``_period`` takes the
        data class's), the election's choice (the action), the event of the rule's anchor (``anchor_time``), and
        the id: in ``_period`` only through an override naming the account for the class, in
        ``LegalHold.applies`` only through a hold naming the account (for the class or for every class). An
        account so named is a profile of its own; for any other the overrides and the account-scoped holds do not
        apply, and the holds for every account are the same for all."""
        named = (account.id, data_class) in self._named or (account.id, None) in self._named
        return (data_class, account.state, account.jurisdiction, tuple(sorted(account.instructions.items())),
                account.election.choice if account.election else None, account.id if named else None)

    def written_cutoff(self, cutoffs: Cutoffs, index: int) -> str:
        key = (cutoffs, index)
        if key not in self._written:
            self._written[key] = iso_utc(cutoffs.instants[index])
        return self._written[key]

    def _series(self, decision: Decision) -> tuple[tuple[pendulum.DateTime, ...], Cutoffs]:
        """The cutoff of each day for the decision's rule and period, and the same as the series the accounts
        sharing them share."""
        key = (decision.rule_id, decision.retain_for)
        if key not in self._cutoffs:
            every_day = cutoff_series(self._ctx.ruleset, decision, self.moments)
            self._cutoffs[key] = (every_day, Cutoffs(every_day))
        return self._cutoffs[key]


def _hold_changes(moments: Sequence[pendulum.DateTime], holds: list[LegalHold]) -> list[int]:
    """The days on which a hold comes into force or stops being in force: its ``placed_at`` or ``released_at``
    lies after the day before's instant and at or before the day's (``LegalHold.applies``)."""
    changes = {bisect_left(moments, instant) for hold in holds for instant in (hold.placed_at, hold.released_at)
               if instant is not None and moments[0] < instant <= moments[-1]}
    return sorted(changes)


def _scheduled(ctx: SweepContext, location_id: str, schedules: _Schedules) -> dict[str, _Schedule]:
    """The location's accounts with a step on some day, and their schedules."""
    data_class = ctx.inventory.locations[location_id].data_class
    return {account.id: schedule for account in ctx.accounts.values()
            if (schedule := schedules.of(account, data_class)) is not None}


def _lines(ctx: SweepContext, location_id: str, schedules: _Schedules, scheduled: dict[str, _Schedule],
           histogram: Histogram) -> list[Due]:
    """The location's lines from its ``store.histogram``: per account, one per day on which records of it fall
    due (that day's cutoff is the first at or after their anchor time)."""
    data_class = ctx.inventory.locations[location_id].data_class
    found = []
    for account_id, per_cutoff in histogram.items():
        plan = scheduled[account_id].plan
        action, rule_id, why, cutoffs = plan.step.action, plan.decision.rule_id, plan.why, plan.cutoffs
        for index, records in per_cutoff.items():  # in any order: forecast sorts all lines once
            cutoff = schedules.written_cutoff(cutoffs, index) if cutoffs is not None else None
            found.append(Due(schedules.day_names[plan.days[index]], data_class, account_id, location_id, action,
                             records, rule_id, cutoff, why))
    return found


def _why(decision: Decision) -> str:
    after = f"{decision.retain_for} after {decision.anchor.value}"
    return f"{decision.rule_id}: {after} ({decision.basis.citation})"
