"""(account, data class, now, legal holds) -> Decision. Pure: no I/O, no clock, no randomness.

This is where the safety invariant lives: a Decision is due for data only if the data's anchor time is
at or before the cutoff and no legal hold applies. Data one second younger than the cutoff is never due.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pendulum

from retention.rules.accounts import Account
from retention.rules.consistency import instruction_problems
from retention.rules.durations import IsoDuration
from retention.rules.loader import RuleSet
from retention.rules.model import Action, Anchor, Basis, Election, Rule


class ResolutionError(ValueError):
    """The question cannot be answered (unknown data class or jurisdiction); nothing may be deleted."""


@dataclass(frozen=True)
class LegalHold:
    id: str
    account_id: str | None  # None: every account
    data_class: str | None  # None: every data class
    placed_at: pendulum.DateTime
    released_at: pendulum.DateTime | None = None

    def applies(self, account_id: str, data_class: str, at: pendulum.DateTime) -> bool:
        in_force = self.placed_at <= at and (self.released_at is None or at < self.released_at)
        return (in_force and self.account_id in (None, account_id)
                and self.data_class in (None, data_class))


@dataclass(frozen=True)
class Decision:
    account_id: str
    data_class: str
    at: pendulum.DateTime
    rule_id: str
    action: Action
    anchor: Anchor
    retain_for: IsoDuration
    cutoff: pendulum.DateTime  # data whose anchor time is at or before this instant is due
    basis: Basis
    blocked_by: tuple[str, ...]  # ids of the legal holds in force
    override_id: str | None
    anchor_time: pendulum.DateTime | None  # the account's event, for terminated_at / contract_end anchors
    election: Election | None
    # Where retain_for comes from: "law", "contract" (the rule's contract basis, or a contract override),
    # "customer's instruction" (the account registry) or "processor's default" (processor policy).
    period_source: str = "processor's default"

    @property
    def isolate(self) -> bool:
        """Data not yet due must be kept isolated from processing (DPA 7(b), SCC Clause 12)."""
        return self.action is Action.RETAIN_ISOLATED

    @property
    def due_at(self) -> pendulum.DateTime | None:
        """For account-event anchors: when the period ends for all of this account's data."""
        return self.retain_for.after(self.anchor_time) if self.anchor_time else None

    def is_due(self, anchor_time: pendulum.DateTime | None) -> bool:
        """May the action be applied to data whose anchor event happened at ``anchor_time``?"""
        if self.blocked_by or anchor_time is None:
            return False
        return anchor_time <= self.cutoff

    def as_dict(self) -> dict[str, object]:
        return {
            "account_id": self.account_id,
            "data_class": self.data_class,
            "at": self.at.isoformat(),
            "rule_id": self.rule_id,
            "action": self.action.value,
            "anchor": self.anchor.value,
            "retain_for": str(self.retain_for),
            "cutoff": self.cutoff.isoformat(),
            "anchor_time": self.anchor_time.isoformat() if self.anchor_time else None,
            "due_at": self.due_at.isoformat() if self.due_at else None,
            "due_now": self.is_due(self.anchor_time) if self.anchor.is_account_event else None,
            "basis": self.basis.model_dump(),
            "blocked_by": list(self.blocked_by),
            "override_id": self.override_id,
            "election": self.election.value if self.election else None,
            "isolate": self.isolate,
            "period_source": self.period_source,
        }


def resolve(ruleset: RuleSet, account: Account, data_class: str, at: pendulum.DateTime,
            holds: tuple[LegalHold, ...] | list[LegalHold] = ()) -> Decision:
    if at.tzinfo is None:
        raise ResolutionError("'at' must be timezone-aware")
    at = at.in_timezone("UTC")
    _refuse_bad_instructions(ruleset, account)
    rule = select_rule(ruleset, account, data_class)
    period, override_id, source = _period(ruleset, rule, account)
    election = account.election.choice if account.election else None
    action = rule.action
    if action is Action.RETURN_THEN_DELETE and election is Election.DELETE:
        action = Action.DELETE
    return Decision(
        account_id=account.id,
        data_class=data_class,
        at=at,
        rule_id=rule.id,
        action=action,
        anchor=rule.anchor,
        retain_for=period,
        cutoff=_cutoff(rule, period, at),
        basis=rule.basis,
        blocked_by=tuple(sorted(h.id for h in holds if h.applies(account.id, data_class, at))),
        override_id=override_id,
        anchor_time=account.event(rule.anchor),
        election=election,
        period_source=source,
    )


@dataclass(frozen=True)
class ProcessorDataDecision:
    """What a rule for the processor's own data says as of ``at``. It names no account: this data belongs to
    none, and no customer's sweep, offboarding or certificate includes it."""

    data_class: str
    at: pendulum.DateTime
    rule_id: str
    action: Action
    anchor: Anchor
    retain_for: IsoDuration
    cutoff: pendulum.DateTime  # records whose anchor time is at or before this instant are due
    basis: Basis

    @property
    def period_source(self) -> str:
        return self.basis.period_source

    def as_dict(self) -> dict[str, object]:
        return {"data_class": self.data_class, "at": self.at.isoformat(), "rule_id": self.rule_id,
                "action": self.action.value, "anchor": self.anchor.value, "retain_for": str(self.retain_for),
                "cutoff": self.cutoff.isoformat(), "basis": self.basis.model_dump(),
                "period_source": self.period_source}


def resolve_processor_data(ruleset: RuleSet, data_class: str, at: pendulum.DateTime) -> ProcessorDataDecision:
    if at.tzinfo is None:
        raise ResolutionError("'at' must be timezone-aware")
    at = at.in_timezone("UTC")
    rules = [r for r in ruleset.processor_rules if r.data_class == data_class]
    if len(rules) != 1:  # validation rules this out
        raise ResolutionError(f"{len(rules)} rules decide the processor data class {data_class!r}")
    rule = rules[0]
    return ProcessorDataDecision(data_class, at, rule.id, Action(rule.action), Anchor(rule.anchor), rule.retain_for,
                                 rule.retain_for.before(at), rule.basis)


def select_rule(ruleset: RuleSet, account: Account, data_class: str) -> Rule:
    if data_class not in ruleset.data_classes.data_classes:
        raise ResolutionError(f"unknown data class {data_class!r}")
    if account.jurisdiction not in ruleset.jurisdictions.jurisdictions:
        raise ResolutionError(f"account {account.id} has unknown jurisdiction {account.jurisdiction!r}")
    matching = [r for r in ruleset.rules if r.data_class == data_class and account.state in r.account_states
                and (r.jurisdictions is None or account.jurisdiction in r.jurisdictions)]
    specific = [r for r in matching if r.jurisdictions is not None]
    tier = specific or matching
    if len(tier) != 1:  # validation rules this out; refuse rather than guess
        raise ResolutionError(f"{len(tier)} rules decide {data_class} for "
                              f"{account.state.value}/{account.jurisdiction}")
    return tier[0]


def _refuse_bad_instructions(ruleset: RuleSet, account: Account) -> None:
    """The registry is checked against the rules when read with them; a caller that read it without them
    still gets no decision for an account whose instructions the rules do not allow."""
    problems = instruction_problems(account.instructions, ruleset) if account.instructions else []
    if problems:
        name, _, message, _ = problems[0]
        raise ResolutionError(f"account {account.id}: instruction for {name}: {message}")


def _period(ruleset: RuleSet, rule: Rule, account: Account) -> tuple[IsoDuration, str | None, str]:
    """The period, the contract override applied (if any), and where the period comes from.

    Precedence, only where the rule has override_bounds (else the rule's period stands: law, or a period the
    processor does not let move): the customer's instruction in the account registry (DPA 3: processing only
    on the customer's instructions; the registry holds the current one), then a contract override
    (overrides.yaml), then the rule. Whichever applies, _cutoff clamps it into the bounds."""
    if rule.override_bounds is not None:
        instruction = account.instructions.get(rule.data_class)
        if instruction is not None:
            return instruction, None, "customer's instruction"
        for override in ruleset.overrides:
            if override.account_id == account.id and override.data_class == rule.data_class:
                return override.retain_for, override.id, "contract"
    return rule.retain_for, None, rule.basis.period_source


def cutoff_series(ruleset: RuleSet, decision: Decision,
                  instants: Sequence[pendulum.DateTime]) -> tuple[pendulum.DateTime, ...]:
    """The cutoff ``resolve`` gives ``decision``'s rule and period at each instant (for the same account and data
    class, every other field of the decision but ``at`` and ``blocked_by`` is the same at any instant). Over
    instants whole days apart (one time of day in UTC) the cutoffs never move earlier: calendar subtraction
    clamps month ends day by day (Mar 30 and Mar 31 - P1M are both Feb 28), and clamping into the rule's bounds
    keeps the order."""
    rule = next((r for r in ruleset.rules if r.id == decision.rule_id), None)
    if rule is None:
        raise ResolutionError(f"no rule {decision.rule_id!r} in the rules")
    return tuple(_cutoff(rule, decision.retain_for, at.in_timezone("UTC")) for at in instants)


def _cutoff(rule: Rule, period: IsoDuration, at: pendulum.DateTime) -> pendulum.DateTime:
    cutoff = period.before(at)
    bounds = rule.override_bounds
    if bounds is not None:
        # Month lengths can push an override past a bound by a day; the shortest period always wins last.
        cutoff = max(cutoff, bounds.max.before(at))
        cutoff = min(cutoff, bounds.min.before(at))
    return cutoff
