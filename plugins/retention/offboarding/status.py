"""Where each open offboarding stands, read from the ledger alone: the first thing on-call and the
customer success manager ask ("is it waiting on us, on the customer, or on the calendar?")."""

from __future__ import annotations

from collections import Counter
from typing import Any, TypedDict

import pendulum

from retention.ledger import Ledger, Run
from retention.offboarding.plan import PLANNED
from retention.rules import parse_utc

# The stages in the order the DAG passes them (termination_offboarding).
AWAITING_APPROVAL = "awaiting approval"
AWAITING_EFFECTIVE_DATE = "approved; waiting for the effective date"
PREPARING_RETURN = "preparing the return package"
AWAITING_RECEIPT = "awaiting the customer's receipt"
DELETING = "deleting"
VERIFYING = "verifying"
RESIDUE = "residue found: needs attention"
BACKUPS = "recording backups"
FINISHING = "subprocessors and certificate"

_KINDS = (PLANNED, "offboarding.approved", "return.delivered", "return.received", "return.window_elapsed",
          "backup.copies_recorded")


class OffboardingStatus(TypedDict):
    run_id: str
    account_id: str
    choice: str
    effective_at: str
    started_at: str
    stage: str  # one of the stages above
    tasks: dict[str, int]  # task status -> how many of the run's tasks are in it
    dag_id: str | None  # the Airflow DAG and run that made it (None for a run planned outside Airflow)
    airflow_run_id: str | None


def open_offboardings(ledger: Ledger, now: pendulum.DateTime) -> list[OffboardingStatus]:
    """Every offboarding not finished yet, oldest first, with its stage and its tasks' states."""
    return [_status(ledger, run, now) for run in ledger.open_runs("offboarding")]


def _status(ledger: Ledger, run: Run, now: pendulum.DateTime) -> OffboardingStatus:
    events = {e.kind: e.payload for e in ledger.run_events(run.id, *_KINDS)}
    request = events[PLANNED]
    tasks = Counter(t.status for t in ledger.tasks(run.id))
    return {"run_id": run.id, "account_id": request["account_id"], "choice": request["choice"],
            "effective_at": request["effective_at"], "started_at": run.started_at.isoformat(),
            "stage": stage(events, request, tasks, now), "tasks": dict(sorted(tasks.items())),
            "dag_id": run.dag_id, "airflow_run_id": run.airflow_run_id}


def stage(events: dict[str, dict[str, Any]], request: dict[str, Any], tasks: Counter[str],
          now: pendulum.DateTime) -> str:
    if "offboarding.approved" not in events:
        return AWAITING_APPROVAL
    if now < parse_utc(request["effective_at"]):
        return AWAITING_EFFECTIVE_DATE
    if request["choice"] == "return" and not {"return.received", "return.window_elapsed"} & events.keys():
        return AWAITING_RECEIPT if "return.delivered" in events else PREPARING_RETURN
    if tasks["planned"] or tasks["running"]:
        return DELETING
    if tasks["done"]:
        return VERIFYING
    if tasks["residue"]:
        return RESIDUE
    return FINISHING if "backup.copies_recorded" in events else BACKUPS
