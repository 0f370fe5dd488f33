"""Mail to on-call when something needs a person: a failed task or DAG run, a sweep past its window.

Every mail goes through the smtp provider's ``SmtpHook`` on the Connection ``RETENTION_SMTP_CONN_ID`` (default
``smtp_default``) to ``RETENTION_ALERT_RECIPIENTS``, from ``RETENTION_ALERT_FROM`` or else the Connection's
``from_email``. Settings are read when a mail is sent, not when a DAG file builds a notifier. With no recipients,
nothing is sent and one warning is logged per mail that would have gone.

A mail carries ids (DAG, task, run, try), the exception's class, its message and the log's URL; never account
data beyond the account id (DESIGN invariant 5). The product's own messages name ids and counts only; a
library's message may not, so every variable text is masked like ``retention config show`` masks secrets and is
withheld whole when the ledger's guard would refuse it as personal data (an address, a phone number, an IP
address, ...): the task log still has it.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.smtp.hooks.smtp import SmtpHook
from airflow.sdk import BaseNotifier
from airflow.sdk.definitions.callback import AsyncCallback
from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference

from retention.ledger.guard import looks_personal
from retention.masking import mask_text
from retention.settings import Settings

if TYPE_CHECKING:
    import jinja2
    from airflow.sdk import Context

log = logging.getLogger(__name__)

PREFIX = "[retention]"
LONGEST_TEXT = 2000  # characters of one message in a mail; the log has the rest


def clean(text: object) -> str:
    """``text`` as a mail may carry it: secrets in a URL or JSON masked, the whole withheld if it looks personal."""
    masked = mask_text(str(text))[:LONGEST_TEXT]
    kind = looks_personal(masked)
    return f"(withheld: it looks like it holds {kind}; the task log has it)" if kind else masked


@dataclass(frozen=True)
class Mail:
    subject: str
    lines: tuple[str, ...]

    def html(self) -> str:
        return "<pre>" + html.escape("\n".join(self.lines)) + "</pre>"


def _addressed(mail: Mail) -> Settings | None:
    """The settings to send ``mail`` with, or None (and a warning) when nobody is to receive it."""
    settings = Settings.from_env()
    if settings.alert_recipients:
        return settings
    log.warning("No mail sent for %r: RETENTION_ALERT_RECIPIENTS is not set", mail.subject)
    return None


def send(mail: Mail) -> bool:
    """Mail the recipients; False when none are configured."""
    settings = _addressed(mail)
    if settings is None:
        return False
    with SmtpHook(smtp_conn_id=settings.smtp_conn_id) as smtp:
        smtp.send_email_smtp(to=list(settings.alert_recipients), from_email=settings.alert_from,
                             subject=mail.subject, html_content=mail.html())
    return True


async def asend(mail: Mail) -> bool:
    """``send`` for the triggerer's event loop (a deadline alert's callback runs there)."""
    settings = _addressed(mail)
    if settings is None:
        return False
    async with SmtpHook(smtp_conn_id=settings.smtp_conn_id) as smtp:
        await smtp.asend_email_smtp(to=list(settings.alert_recipients), from_email=settings.alert_from,
                                    subject=mail.subject, html_content=mail.html())
    return True


def failure_mail(context: Context) -> Mail:
    """What failed (DAG, task, run, try), with what exception, and where its log is."""
    ti = context.get("ti")
    dag = context.get("dag")
    dag_id = ti.dag_id if ti is not None else dag.dag_id if dag is not None else "(unknown DAG)"
    run_id = context.get("run_id") or (ti.run_id if ti is not None else "(unknown run)")
    task_id = ti.task_id if ti is not None else "(no task)"
    try_number = ti.try_number if ti is not None else 0
    whole_run = "reason" in context  # a DAG's callback; a task's has the exception instead
    what = "DAG run failed" if whole_run else "task failed"
    subject = f"{PREFIX} {what}: {clean(dag_id)}.{clean(task_id)} run {clean(run_id)} try {try_number}"
    exception = context.get("exception")
    lines = [f"DAG: {clean(dag_id)}", f"Task: {clean(task_id)}" + (" (the run's last task)" if whole_run else ""),
             f"Run: {clean(run_id)}", f"Try: {try_number}"]
    if whole_run:
        lines.append(f"Reason: {clean(context.get('reason'))}")
    if exception is not None:
        kind = type(exception)
        lines += [f"Exception: {kind.__module__}.{kind.__qualname__}", f"Message: {clean(exception)}"]
    if ti is not None:
        lines.append(f"Log: {clean(ti.log_url)}")
    return Mail(subject, tuple(lines))


class FailureNotifier(BaseNotifier):
    """``on_failure_callback=[FailureNotifier()]`` on a DAG or a task: mails ``failure_mail`` to the recipients."""

    def notify(self, context: Context) -> None:
        send(failure_mail(context))

    def render_template_fields(self, context: Context, jinja_env: jinja2.Environment | None = None) -> None:
        """Nothing to render: the mail is built from the context, no field is a template. (Rendering would build a
        Jinja environment from the context's DAG, which dag.test() passes to a DAG's callbacks serialized.)"""


async def sweep_missed_window(context: Mapping[str, Any] | None = None) -> None:
    """The deadline alert's callback (in the triggerer): the sweep's run is still not done at its deadline.
    Airflow passes the run (``dag_run``, as its REST API shows it) and the deadline in ``context``."""
    run: Mapping[str, Any] = (context or {}).get("dag_run") or {}
    deadline: Mapping[str, Any] = (context or {}).get("deadline") or {}
    dag_id, run_id = clean(run.get("dag_id", "retention_sweep")), clean(run.get("dag_run_id", "(unknown run)"))
    await asend(Mail(f"{PREFIX} missed its window: {dag_id} run {run_id}", (
        f"DAG: {dag_id}", f"Run: {run_id}", f"State at the deadline: {clean(run.get('state', 'unknown'))}",
        f"Queued at: {clean(run.get('queued_at'))}", f"Deadline: {clean(deadline.get('deadline_time'))}",
        "The sweep must finish within its window every day: see docs/runbook.md.")))


def sweep_deadline() -> DeadlineAlert:
    """``deadline=sweep_deadline()`` on retention_sweep: mail the recipients when a run has not finished
    ``RETENTION_SWEEP_DEADLINE_HOURS`` after it was queued (read when the DAG file is parsed)."""
    hours = Settings.from_env().sweep_deadline_hours
    return DeadlineAlert(reference=DeadlineReference.DAGRUN_QUEUED_AT, interval=timedelta(hours=hours),
                         callback=AsyncCallback(sweep_missed_window), name="sweep window")
