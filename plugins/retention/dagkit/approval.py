"""Four-eyes approval on Airflow's human-in-the-loop ApprovalOperator: one form, two things it approves.

``LedgeredApproval`` is the form: Approve or Reject in Airflow's Required Actions, with a reason (ids only), and
every answer handed to ``record`` before Airflow acts on it. A subclass says what records the answer and which
ids it needs; that recorder writes the answer to the ledger and refuses, ledgering the refusal, an approval by the
person who asked for the action, by nobody identified, or by a user without the approval permission. A refusal
raises, so the task fails and nothing after it runs; on reject every later task is skipped (whatever its trigger
rule) and the recorder closes what was rejected, so nothing is touched.

- ``FourEyesApproval``: a termination offboarding's plan (``offboarding.tasks.record_decision``).
- ``SubjectRequestApproval``: a data subject request's preview (``requests.tasks.record_decision``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import Param

if TYPE_CHECKING:
    from airflow.sdk import Context


class LedgeredApproval(ApprovalOperator):
    """An ApprovalOperator whose answer ``record`` ledgers (or refuses) before Airflow acts on it. ``actor``: who
    the ledger names as recording the answer (the DAG's actor)."""

    def __init__(self, *, actor: str, **kwargs: Any) -> None:
        if type(self).record is LedgeredApproval.record:  # refused where the DAG is parsed, not when a person answers
            raise TypeError(f"{type(self).__name__} must say what records its answer (override record)")
        kwargs["params"] = {"reason": Param("", type="string",
                                            description="Why you approve or reject (ids only, no personal data)")}
        super().__init__(ignore_downstream_trigger_rules=True, **kwargs)
        self.actor = actor

    def record(self, event: dict[str, Any]) -> None:
        """Ledger the answer (``event`` as Airflow's HITL gives it); raise to refuse it."""
        raise NotImplementedError(f"{type(self).__name__} must say what records its answer")

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        if "error" not in event:  # a timeout or a failure answered nothing: Airflow fails the task on it
            self.record(event)
        return super().execute_complete(context, event)


class FourEyesApproval(LedgeredApproval):
    """The approval of an offboarding: the approver reads the plan (locations, counts, exceptions). The Airflow
    user who triggered the run (its requester, as the plan recorded it) may not approve it, and the answerer needs
    the APPROVE_OFFBOARDING permission. ``run_id``: the offboarding's ledger run (templated)."""

    template_fields = (*LedgeredApproval.template_fields, "run_id")

    def __init__(self, *, run_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.run_id = run_id

    def record(self, event: dict[str, Any]) -> None:
        # Imported when an answer comes, so that a DAG file parses only its own tasks module.
        from retention.offboarding import tasks as offboarding_tasks

        offboarding_tasks.record_decision(self.run_id, event, actor=self.actor)


class SubjectRequestApproval(LedgeredApproval):
    """The approval of a data subject request, asked only when its preview found more than
    ``RETENTION_SUBJECT_APPROVAL_RECORDS`` records or the identity expansion hit its bound
    (``requests.tasks.approve_if_small`` decides). The approver reads the preview (counts per location and
    subprocessor, what is kept and why, the deadline). The staff member who filed the request may not approve it;
    an answer to another preview than the request's current one is refused as stale. ``request_id``: the
    request; ``run_id``: the preview's ledger run the form shows (both templated)."""

    template_fields = (*LedgeredApproval.template_fields, "request_id", "run_id")

    def __init__(self, *, request_id: str, run_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.request_id, self.run_id = request_id, run_id

    def record(self, event: dict[str, Any]) -> None:
        # Imported when an answer comes, so that a DAG file parses only its own tasks module.
        from retention.requests import tasks as request_tasks

        request_tasks.record_decision(self.request_id, event, actor=self.actor, run_id=self.run_id)
