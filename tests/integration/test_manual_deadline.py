"""A manual attestation's form under dag.test(): it mails when it opens, reminds before the request's deadline and
fails at it (its failure notifier mails), or completes with an answer given before the reminder, which never comes.

Airflow 3.3 parks a form in ``awaiting_input``; the scheduler's timeout sweep resumes it when its timeout passes.
dag.test() runs no scheduler, so the test runs that sweep (``SchedulerJobRunner.check_awaiting_input_timeouts``,
Airflow's own) in a thread beside the run, as the scheduler loop would."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pendulum
import pytest

from retention.dagkit.hitl import ManualAttestation, request_deadline
from retention.dagkit.notify import FailureNotifier
from tests.fixtures import smtp as smtp_fixtures
from tests.fixtures.adhoc_dags import registered

ATTESTED, NOT_CONFIRMED = "Attested", "Not confirmed"
SUBJECT = "acme: attest that the provider deleted account acct_1001"


def attestation_dag(dag_id: str, deadline_in: timedelta):
    from airflow.sdk import DAG, task

    with DAG(dag_id, schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False) as dag:
        @task(task_id="open_request")
        def open_request() -> dict[str, Any]:
            return {"channel": "privacy@acme.example", "evidence": ["ticket"],
                    "deadline": (datetime.now(UTC) + deadline_in).isoformat()}

        attest = ManualAttestation(task_id="attest", request_task_id="open_request", subject=SUBJECT,
                                   body="File the request, then attest.", options=[ATTESTED, NOT_CONFIRMED],
                                   retries=0, on_failure_callback=[FailureNotifier()])
        open_request() >> attest
    return registered(dag)


@contextmanager
def scheduler_timeout_sweep() -> Iterator[list[str]]:
    """Airflow's scheduler-side sweep of timed-out forms, every half second until the block ends."""
    from airflow.jobs.job import Job
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner

    runner = SchedulerJobRunner(job=Job())
    stop, errors = threading.Event(), []

    def sweep() -> None:
        while not stop.wait(0.5):
            try:
                runner.check_awaiting_input_timeouts()
            except Exception as exc:  # SQLite "database is locked" while dag.test() writes: the next tick retries
                errors.append(repr(exc))

    thread = threading.Thread(target=sweep, daemon=True)
    thread.start()
    try:
        yield errors
    finally:
        stop.set()
        thread.join(timeout=30)


def answer_when_parked(dag_id: str, chosen: list[str], params: dict[str, Any], *,
                       ready: Callable[[], bool] = lambda: True) -> threading.Thread:
    """Answer the form through the function Airflow's HITL REST route calls, as user dpo-7, once it waits and
    ``ready()`` holds."""
    def answer() -> None:
        from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
        from airflow.api_fastapi.core_api.datamodels.hitl import UpdateHITLDetailPayload
        from airflow.api_fastapi.core_api.routes.public.hitl import update_hitl_detail
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session
        from airflow.utils.state import TaskInstanceState

        while not done.wait(0.5):
            if not ready():
                continue
            try:
                with create_session() as session:
                    ti = session.query(TaskInstance).filter_by(dag_id=dag_id, task_id="attest",
                                                                state=TaskInstanceState.AWAITING_INPUT).first()
                    if ti is None:
                        continue
                    update_hitl_detail(dag_id=dag_id, dag_run_id=ti.run_id, task_id="attest",
                                       update_hitl_detail_payload=UpdateHITLDetailPayload(chosen_options=chosen,
                                                                                          params_input=params),
                                       user=SimpleAuthManagerUser(username="dpo-7", role="op"), session=session)
                thread.answered = True
                return
            except Exception as exc:  # SQLite "database is locked" while dag.test() writes: try again
                thread.attempt_errors.append(repr(exc))

    done = threading.Event()
    thread = threading.Thread(target=answer, daemon=True)
    thread.answered, thread.attempt_errors, thread.done = False, [], done
    thread.start()
    return thread


def states(run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def run_answered(dag, answerer: threading.Thread):
    """``dag.test()`` beside the scheduler's timeout sweep while ``answerer`` answers the form; the run, which
    must have succeeded with the answer given."""
    try:
        with scheduler_timeout_sweep():
            run = dag.test()
    finally:
        answerer.done.set()
        answerer.join(timeout=30)
    assert answerer.answered, answerer.attempt_errors[-3:]
    assert str(run.state) == "success", states(run)
    return run


def test_an_unanswered_form_reminds_then_fails_at_the_deadline_and_mails(airflow_db, smtp_sink, monkeypatch) -> None:
    monkeypatch.setenv("RETENTION_ATTESTATION_REMINDER_HOURS", str(20 / 3600))  # 20 s before a deadline 30 s away
    dag = attestation_dag("attest_unanswered", deadline_in=timedelta(seconds=30))

    with scheduler_timeout_sweep():
        run = dag.test()

    assert str(run.state) == "failed" and states(run)["attest"] == "failed"
    subjects = smtp_sink.wait_for(lambda s: len(s) >= 3)
    assert len(subjects) == 3, subjects
    assert subjects[0] == f"[retention] action required: attest_unanswered.attest run {run.run_id}"
    assert subjects[1].startswith("[retention] reminder, answer by ")
    assert subjects[1].endswith(f": attest_unanswered.attest run {run.run_id}")
    assert subjects[2] == f"[retention] task failed: attest_unanswered.attest run {run.run_id} try 1"
    reminder, failure = (smtp_fixtures.body(m) for _, m in smtp_sink.received[1:])
    assert f"Form: {SUBJECT}" in reminder and "Unanswered at the deadline, the task fails." in reminder
    assert "Exception: airflow.providers.standard.exceptions.HITLTimeoutError" in failure


def test_a_form_answered_before_the_reminder_completes_and_no_reminder_is_sent(airflow_db, smtp_sink,
                                                                             monkeypatch) -> None:
    monkeypatch.setenv("RETENTION_ATTESTATION_REMINDER_HOURS", "0.5")  # the reminder would come in 30 minutes
    dag = attestation_dag("attest_answered", deadline_in=timedelta(hours=1))
    run = run_answered(dag, answer_when_parked("attest_answered", [ATTESTED], {}))

    result = run.get_task_instance("attest").xcom_pull(task_ids="attest")
    assert result["chosen_options"] == [ATTESTED] and result["responded_by_user"]["id"] == "dpo-7"
    assert smtp_sink.subjects == [f"[retention] action required: attest_answered.attest run {run.run_id}"]


def test_a_form_answered_after_the_reminder_completes(airflow_db, smtp_sink, monkeypatch) -> None:
    monkeypatch.setenv("RETENTION_ATTESTATION_REMINDER_HOURS", str(50 / 3600))  # 50 s before a deadline 60 s away
    dag = attestation_dag("attest_reminded", deadline_in=timedelta(seconds=60))
    run_answered(dag, answer_when_parked("attest_reminded", [ATTESTED], {},
                                         ready=lambda: any("reminder" in s for s in smtp_sink.subjects)))

    subjects = smtp_sink.subjects
    assert len(subjects) == 2 and subjects[0].startswith("[retention] action required: attest_reminded.attest")
    assert subjects[1].startswith("[retention] reminder, answer by ")


def test_a_deadline_date_allows_that_whole_day_and_a_datetime_needs_its_offset() -> None:
    assert request_deadline({"deadline": "2026-12-01"}) == datetime(2026, 12, 2, tzinfo=UTC)
    assert request_deadline({"deadline": "2026-12-01T09:30:00+01:00"}) == datetime(2026, 12, 1, 8, 30, tzinfo=UTC)
    with pytest.raises(ValueError, match="no UTC offset"):
        request_deadline({"deadline": "2026-12-01T09:30:00"})
    with pytest.raises(LookupError, match="request_task_id"):
        request_deadline(None)


def test_a_manual_attestation_has_no_default_answer() -> None:
    with pytest.raises(ValueError, match="no default answer"):
        ManualAttestation(task_id="attest", request_task_id="open_request", subject=SUBJECT,
                          options=[ATTESTED, NOT_CONFIRMED], defaults=[ATTESTED])
