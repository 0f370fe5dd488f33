"""Four-eyes approval of an offboarding, on Airflow's human-in-the-loop ApprovalOperator.

The approver reads the plan (locations, counts, exceptions) in the Required Actions form and approves
or rejects with a reason. The requester may not approve their own request. Either answer is written to
the ledger before Airflow acts on it; on reject every later task is skipped and the run is closed as
rejected, so nothing is touched.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import Param

from retention.offboarding import tasks as steps


class FourEyesApproval(ApprovalOperator):
    template_fields = (*ApprovalOperator.template_fields, "run_id", "requested_by")

    def __init__(self, *, run_id: str, requested_by: str, actor: str, **kwargs: Any) -> None:
        kwargs["params"] = {"reason": Param("", type="string",
                                            description="Why you approve or reject (ids only, no personal data)")}
        super().__init__(ignore_downstream_trigger_rules=True, **kwargs)
        self.run_id, self.requested_by, self.actor = run_id, requested_by, actor

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        if "error" not in event:
            steps.record_decision(self.run_id, event, requested_by=self.requested_by, actor=self.actor)
        return super().execute_complete(context, event)
