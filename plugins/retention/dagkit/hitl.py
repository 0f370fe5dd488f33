"""A manual subprocessor request's attestation form: open until the request's deadline, with a reminder before it.

``ManualAttestation`` is Airflow's ``HITLEntryOperator`` with the deadline of the request its upstream task opened
(``retention.subprocessors.tasks.open_manual_request``) as the form's response timeout. On Airflow 3.3 a form
waits in the ``awaiting_input`` state: no worker slot, no trigger; the Core API resumes the task when someone
answers, and the scheduler's timeout sweep resumes it when the timeout passes. The form has no default answer, so
at the deadline the task fails (``HITLTimeoutError``; the retry policy does not retry it) and its failure
notifier mails on-call.

The reminder uses the same machinery twice. The form first waits only until ``RETENTION_ATTESTATION_REMINDER_HOURS``
before the deadline. When that wait times out unanswered (the scheduler's sweep resumes a form with its answer if
one came in time), ``remind`` mails the recipients and parks the form again until the deadline; an answer given in
the moments between the sweep and the new park is taken at once, after a reminder that was no longer needed. An
answer given during the first wait resumes ``remind`` with it, which completes as the form would. A form opened
with less time left than the reminder lead gets no reminder: its "action required" mail, sent when any form
opens, already names the deadline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.hitl import HITLEntryOperator, HITLOperator
from airflow.sdk import BaseNotifier
from airflow.sdk.exceptions import TaskAwaitingInput

from retention.dagkit.notify import PREFIX, Mail, clean, send
from retention.settings import Settings

if TYPE_CHECKING:
    from airflow.sdk import Context

AT_ONCE = timedelta(seconds=1)  # the shortest wait Airflow is asked for: a deadline already passed


def request_deadline(opened: object) -> datetime:
    """The deadline of an opened manual request (its XCom): an ISO datetime with its offset, or an ISO date,
    which allows that whole day (UTC)."""
    text = opened.get("deadline") if isinstance(opened, Mapping) else None
    if not isinstance(text, str):
        raise LookupError("the manual request's XCom has no 'deadline': is request_task_id its open_request task?")
    if len(text) == len("YYYY-MM-DD"):
        return datetime.combine(date.fromisoformat(text) + timedelta(days=1), time.min, UTC)
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError("the manual request's deadline has no UTC offset")
    return moment


def _form_ids(context: Context) -> tuple[str, str, str]:
    ti = context["ti"]
    return clean(ti.dag_id), clean(ti.task_id), clean(ti.run_id)


def _answer_at(context: Context) -> str:
    """The form's page in Airflow ("required actions"), or a note when Airflow's base URL is not configured."""
    try:
        return clean(HITLOperator.generate_link_to_ui_from_context(context=context))
    except ValueError:
        return "(set [api] base_url to link the form here)"


class ActionRequired(BaseNotifier):
    """Mails the recipients that a form waits for an answer (a HITL operator calls it when the form opens)."""

    def notify(self, context: Context) -> None:
        dag_id, task_id, run_id = _form_ids(context)
        task = context["task"]
        until = task.hitl_summary.get("timeout_datetime") if isinstance(task, HITLOperator) else None
        subject = task.subject if isinstance(task, HITLOperator) else task_id
        send(Mail(f"{PREFIX} action required: {dag_id}.{task_id} run {run_id}", (
            f"Form: {clean(subject)}", f"Answer by: {clean(until) if until else 'no deadline'}",
            f"Answer at: {_answer_at(context)}")))


class ManualAttestation(HITLEntryOperator):
    """The attestation form of a manual request: ``HITLEntryOperator``'s arguments, plus ``request_task_id``, the
    task whose XCom is the opened request. Fails at the request's deadline; reminds before it; mails when it opens
    (``ActionRequired``, ahead of any ``notifiers`` given)."""

    def __init__(self, *, request_task_id: str, notifiers: Sequence[BaseNotifier] | BaseNotifier | None = None,
                 **kwargs: Any) -> None:
        if kwargs.get("defaults") is not None:
            raise ValueError("a manual attestation has no default answer: at its deadline it fails")
        given = [notifiers] if isinstance(notifiers, BaseNotifier) else list(notifiers or [])
        super().__init__(notifiers=[ActionRequired(), *given], **{**kwargs, "defaults": None})
        self.request_task_id = request_task_id

    def _deadline(self, context: Context) -> datetime:
        return request_deadline(context["ti"].xcom_pull(task_ids=self.request_task_id))

    def execute(self, context: Context) -> Any:
        deadline, now = self._deadline(context), datetime.now(UTC)
        remind_at = deadline - timedelta(hours=Settings.from_env().attestation_reminder_hours)
        self.response_timeout = max(deadline - now, AT_ONCE)
        try:
            return super().execute(context)  # writes the form, mails that it opened, parks it until the deadline
        except TaskAwaitingInput as parked:
            if remind_at <= now:
                raise
            raise TaskAwaitingInput(method_name="remind", kwargs=parked.kwargs, timeout=remind_at - now) from None

    def remind(self, context: Context, event: dict[str, Any]) -> Any:
        """Resumed at the reminder time (a timeout event), or earlier by an answer (the answer's event)."""
        if event.get("error_type") != "timeout":
            return self.execute_complete(context, event)
        # The scheduler resumes a form with its answer when one came before the timeout: this one had none.
        deadline = self._deadline(context)
        dag_id, task_id, run_id = _form_ids(context)
        send(Mail(f"{PREFIX} reminder, answer by {deadline.isoformat()}: {dag_id}.{task_id} run {run_id}", (
            f"Form: {clean(self.subject)}", f"Answer by: {deadline.isoformat()}",
            "Unanswered at the deadline, the task fails.", f"Answer at: {_answer_at(context)}")))
        # An answer given since the scheduler's check is taken at once: Airflow resumes a form parked with its
        # answer already in.
        raise TaskAwaitingInput(method_name="execute_complete", timeout=max(deadline - datetime.now(UTC), AT_ONCE))
