"""Four-eyes approval of an offboarding, on Airflow's human-in-the-loop ApprovalOperator.

The approver reads the plan (locations, counts, exceptions) in the Required Actions form and approves
or rejects with a reason. The Airflow user who triggered the run (its requester, as the plan recorded it)
may not approve it; an answer without an identified user, or by a user without the APPROVE_OFFBOARDING
permission, is refused. Every answer and every refusal is written to the ledger before Airflow acts on it;
on reject every later task is skipped and the run is closed as rejected, so nothing is touched.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import Param

from retention.offboarding import tasks as offboarding_tasks  # not retention.engine.steps


class FourEyesApproval(ApprovalOperator):
    template_fields = (*ApprovalOperator.template_fields, "run_id")

    def __init__(self, *, run_id: str, actor: str, **kwargs: Any) -> None:
        kwargs["params"] = {"reason": Param("", type="string",
                                            description="Why you approve or reject (ids only, no personal data)")}
        super().__init__(ignore_downstream_trigger_rules=True, **kwargs)
        self.run_id, self.actor = run_id, actor

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        if "error" not in event:
            offboarding_tasks.record_decision(self.run_id, event, actor=self.actor)
        return super().execute_complete(context, event)
