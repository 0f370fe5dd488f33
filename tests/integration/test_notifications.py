"""Failure notifications and the sweep's deadline alert, mailed through the smtp provider to a real SMTP server on
loopback: a real task fails under dag.test(), and Airflow's own CallbackTrigger runs the deadline's callback."""

from __future__ import annotations

import asyncio
import html
import logging
import uuid
from datetime import timedelta

import pendulum
import pytest

from retention.dagkit.notify import FailureNotifier, Mail, send, sweep_deadline
from tests.fixtures.adhoc_dags import registered
from tests.fixtures.smtp import RECIPIENTS, SENDER, body

CUSTOMER_EMAIL = "jane.doe@customer.example"


def failing_dag(dag_id: str, message: str):
    from airflow.sdk import DAG, task

    with DAG(dag_id, schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False) as dag:
        @task(task_id="erase", retries=0, on_failure_callback=[FailureNotifier()])
        def erase() -> None:
            raise RuntimeError(message)

        erase()
    return registered(dag)



def test_a_failed_task_mails_once_with_its_ids_exception_and_log(airflow_db, smtp_sink) -> None:
    run = failing_dag("notify_failure", "account acct_1001: 3 batches left, the store stopped answering").test()

    assert str(run.state) == "failed"
    subjects = smtp_sink.wait_for(lambda s: len(s) >= 1)
    assert subjects == [f"[retention] task failed: notify_failure.erase run {run.run_id} try 1"]
    delivered_to, message = smtp_sink.received[0]
    text = html.unescape(body(message))
    assert delivered_to == RECIPIENTS and message["From"] == SENDER
    assert "Exception: builtins.RuntimeError" in text
    assert "Message: account acct_1001: 3 batches left, the store stopped answering" in text
    assert f"/dags/notify_failure/runs/{run.run_id.replace(':', '%3A').replace('+', '%2B')}/tasks/erase" in text


def test_a_message_holding_personal_data_is_withheld_from_the_mail(airflow_db, smtp_sink) -> None:
    run = failing_dag("notify_withheld", f"provider said: no contact {CUSTOMER_EMAIL} for acct_1001").test()

    assert str(run.state) == "failed"
    smtp_sink.wait_for(lambda s: len(s) >= 1)
    _, message = smtp_sink.received[0]
    text = html.unescape(body(message))
    assert CUSTOMER_EMAIL not in message.as_string() and CUSTOMER_EMAIL not in text
    assert "Exception: builtins.RuntimeError" in text
    assert "Message: (withheld: it looks like it holds an email address; the task log has it)" in text
    assert len(smtp_sink.received) == 1


def test_a_refused_task_fails_at_once_and_its_dag_mails_once(airflow_db, smtp_sink) -> None:
    """The retry policy fails a hold at its first try although the task has retries; the DAG's notifier mails."""
    from airflow.sdk import DAG, task

    from retention.dagkit.retry import RETRY_POLICY
    from retention.subprocessors.context import Held

    with DAG("notify_dag_failure", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
             catchup=False, on_failure_callback=[FailureNotifier()]) as dag:
        @task(task_id="erase", retries=2, retry_policy=RETRY_POLICY)
        def erase() -> None:
            raise Held(["hold_7"])

        erase()
    run = registered(dag).test()

    assert str(run.state) == "failed"
    assert [(ti.task_id, str(ti.state), ti.try_number) for ti in run.get_task_instances()] == [("erase", "failed", 1)]
    subjects = smtp_sink.wait_for(lambda s: len(s) >= 1)
    assert subjects == [f"[retention] DAG run failed: notify_dag_failure.erase run {run.run_id} try 1"]
    text = html.unescape(body(smtp_sink.received[0][1]))
    assert "Task: erase (the run's last task)" in text and "Reason: task_failure" in text


def test_without_recipients_nothing_is_sent_and_one_warning_says_so(smtp_sink, monkeypatch, caplog) -> None:
    monkeypatch.delenv("RETENTION_ALERT_RECIPIENTS")
    with caplog.at_level(logging.WARNING, logger="retention.dagkit.notify"):
        assert send(Mail("[retention] task failed: d.t run r try 1", ("DAG: d",))) is False
    warnings = [r.getMessage() for r in caplog.records if r.name == "retention.dagkit.notify"]
    assert warnings == ["No mail sent for '[retention] task failed: d.t run r try 1': "
                        "RETENTION_ALERT_RECIPIENTS is not set"]
    assert smtp_sink.received == []


def test_the_sweep_deadline_is_queued_at_plus_the_setting_and_survives_serialization(airflow_db,
                                                                                      monkeypatch) -> None:
    from airflow.models.deadline_alert import DeadlineAlert as StoredAlert
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.sdk import DAG
    from airflow.sdk.definitions.callback import AsyncCallback
    from airflow.sdk.definitions.deadline import DeadlineReference
    from airflow.utils.session import create_session

    monkeypatch.setenv("RETENTION_SWEEP_DEADLINE_HOURS", "4.5")
    alert = sweep_deadline()
    assert alert.reference == DeadlineReference.DAGRUN_QUEUED_AT
    assert alert.interval == timedelta(hours=4, minutes=30)
    assert isinstance(alert.callback, AsyncCallback)
    assert alert.callback.path == "retention.dagkit.notify.sweep_missed_window"

    registered(DAG("notify_deadline", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
                   deadline=alert))
    stored = SerializedDagModel.get("notify_deadline")
    assert stored is not None
    with create_session() as session:
        rows = [session.get(StoredAlert, uuid.UUID(i)) for i in stored.data["dag"]["deadline"]]
        kept = [(r.name, r.callback_def["__data__"]["path"], r.reference["reference_type"]) for r in rows if r]
    assert kept == [("sweep window", "retention.dagkit.notify.sweep_missed_window", "DagRunQueuedAtDeadline")]


def test_a_missed_sweep_deadline_mails_through_airflows_callback_trigger(smtp_sink) -> None:
    """The scheduler queues the callback with the run and the deadline as its context; the triggerer runs it in
    CallbackTrigger: the same trigger here, fed what the scheduler gives it."""
    from airflow.triggers.callback import CallbackTrigger

    callback = sweep_deadline().callback
    context = {"dag_run": {"dag_id": "retention_sweep", "dag_run_id": "scheduled__2026-11-30T02:00:00+00:00",
                           "state": "running", "queued_at": "2026-11-30T02:00:04+00:00"},
               "deadline": {"id": "0192", "deadline_time": "2026-11-30T08:00:04+00:00"}}
    trigger = CallbackTrigger(callback_path=callback.path, callback_kwargs={**callback.kwargs, "context": context})

    async def events() -> list[dict]:
        return [event.payload async for event in trigger.run()]

    outcome = asyncio.run(events())

    assert [e["state"] for e in outcome] == ["running", "success"], outcome
    subjects = smtp_sink.wait_for(lambda s: len(s) >= 1)
    assert subjects == ["[retention] missed its window: retention_sweep run scheduled__2026-11-30T02:00:00+00:00"]
    text = html.unescape(body(smtp_sink.received[0][1]))
    assert "State at the deadline: running" in text and "Deadline: 2026-11-30T08:00:04+00:00" in text


@pytest.fixture(autouse=True)
def _no_inherited_recipients(monkeypatch) -> None:
    """Only the SMTP sink sets recipients: a developer's own environment must not receive test mail."""
    monkeypatch.delenv("RETENTION_ALERT_RECIPIENTS", raising=False)
    monkeypatch.delenv("RETENTION_ALERT_FROM", raising=False)
    monkeypatch.delenv("RETENTION_SMTP_CONN_ID", raising=False)
