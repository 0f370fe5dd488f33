"""Four-eyes approval of a data subject request, on Airflow's human-in-the-loop ApprovalOperator.

Asked only when the preview found more than ``RETENTION_SUBJECT_APPROVAL_RECORDS`` records or the identity
expansion hit its bound (``tasks.approve_if_small`` decides). The approver reads the preview (counts per location
and subprocessor, what is kept and why, the deadline) in the Required Actions form and approves or rejects with a
reason. ``tasks.record_decision`` refuses, and ledgers the refusal of, an approval by the staff member who filed
the request, by nobody identified, or by a user without the approval permission; on reject every later task is
skipped and the request is closed as rejected, so nothing is touched.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import Param

from retention.requests import tasks as request_tasks


class SubjectRequestApproval(ApprovalOperator):
    template_fields = (*ApprovalOperator.template_fields, "request_id", "run_id")

    def __init__(self, *, request_id: str, run_id: str, actor: str, **kwargs: Any) -> None:
        kwargs["params"] = {"reason": Param("", type="string",
                                            description="Why you approve or reject (ids only, no personal data)")}
        super().__init__(ignore_downstream_trigger_rules=True, **kwargs)
        self.request_id, self.run_id, self.actor = request_id, run_id, actor

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        if "error" not in event:
            request_tasks.record_decision(self.request_id, event, actor=self.actor, run_id=self.run_id)
        return super().execute_complete(context, event)
