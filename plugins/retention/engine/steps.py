"""Decision -> what the sweep does in one location, or why it keeps the data. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from retention.rules import Action, Decision
from retention.stores.base import Selector


@dataclass(frozen=True)
class Step:
    action: str  # "delete" | "anonymize"
    selector: Selector


@dataclass(frozen=True)
class Skip:
    reason: str  # one sentence for the report and the ledger; ids and dates only


def step_for(decision: Decision) -> Step | Skip:
    if decision.blocked_by:
        return Skip(f"legal hold {', '.join(decision.blocked_by)} in force")
    if decision.action is Action.RETURN_THEN_DELETE:
        return Skip("customer elected return: deleted by the termination offboarding once returned (DPA 7(b))")
    if decision.anchor.is_account_event:
        if decision.anchor_time is None:
            return Skip(f"not due: the account has no {decision.anchor.value}")
        if not decision.is_due(decision.anchor_time):
            return Skip(f"not due until {decision.due_at.isoformat()} ({decision.retain_for} after {decision.anchor.value})")
        selector = Selector(decision.account_id)
    else:
        selector = Selector(decision.account_id, decision.anchor.value, decision.cutoff)
    # retain_isolated: only records past the statutory period are selected here; isolating the younger
    # ones is the termination offboarding's job.
    return Step("anonymize" if decision.action is Action.ANONYMIZE else "delete", selector)


def count_mode(action: str) -> dict:
    """Anonymized rows stay in place: for an anonymize step only rows not yet anonymized count."""
    return {"pending_anonymize": True} if action == "anonymize" else {}
