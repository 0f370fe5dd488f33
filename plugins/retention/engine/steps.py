"""Decision -> what the sweep does in one location, or why it keeps the data. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

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
            due = decision.retain_for.after(decision.anchor_time).isoformat()  # due_at, with anchor_time known
            return Skip(f"not due until {due} ({decision.retain_for} after {decision.anchor.value})")
        selector = Selector(decision.account_id)
    else:
        selector = Selector(decision.account_id, decision.anchor.value, decision.cutoff)
    # retain_isolated: only records past the statutory period are selected here; isolating the younger
    # ones is the termination offboarding's job.
    return Step("anonymize" if decision.action is Action.ANONYMIZE else "delete", selector)


class CountMode(TypedDict, total=False):
    pending_anonymize: bool  # the keyword of Store.count, batches and verify


def count_mode(action: str) -> CountMode:
    """Anonymized rows stay in place: for an anonymize step only rows not yet anonymized count."""
    return {"pending_anonymize": True} if action == "anonymize" else {}
