"""Async deletion jobs are waited for in Airflow's triggerer: the task defers to ``JobTrigger`` and
resumes where it stopped. Against the SendGrid emulator, whose contact deletions are jobs that finish
after a few polls, and whose search is capped at 50 (so 120 contacts take three rounds of jobs)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from retention.ledger import Ledger
from retention.subprocessors import SubprocessorError
from retention.triggered import run_as
from tests.emulators.sendgrid import KEY, SendGridEmulator
from tests.fixtures.subprocessors import RULES, events_of

TENANT, OTHER = "acct_1001", "acct_2002"
DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture
def sendgrid():
    with SendGridEmulator(pending_polls=2) as emulator:
        emulator.add_tenant(TENANT, contacts=120)
        emulator.add_tenant(OTHER, contacts=7)
        yield emulator


@pytest.fixture
def environment(sendgrid, tmp_path, monkeypatch) -> str:
    """The Connection ``sendgrid`` pointed at the emulator; rules and a fresh ledger as the DAG reads them."""
    host, port = sendgrid.url.removeprefix("http://").split(":")
    monkeypatch.setenv("AIRFLOW_CONN_SENDGRID", json.dumps(
        {"conn_type": "http", "host": host, "port": int(port), "schema": "http", "password": KEY}))
    monkeypatch.setenv("RETENTION_RULES_DIR", str(RULES))
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    monkeypatch.setenv("RETENTION_DATABASE_URL", url)
    Ledger.open(url).close()
    return url


def operator(resource: str = "contacts"):
    from retention.subprocessors.operator import EraseResourceOperator

    return EraseResourceOperator(task_id=f"erase_{resource}", subprocessor="sendgrid", resource=resource,
                                 account_id=TENANT, actor="test")


def fire(trigger) -> dict:
    """Run a trigger as the triggerer would, to its first event."""
    async def first_event() -> dict:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("the trigger ended without an event")

    return asyncio.run(first_event())


def test_the_task_defers_while_jobs_run_and_resumes_round_by_round(environment, sendgrid, airflow_db) -> None:
    from airflow.sdk.exceptions import TaskDeferred

    from retention.subprocessors.trigger import JobTrigger

    op = operator()
    deferrals, polls_in_worker = 0, []
    call = lambda: op.execute(context={})  # noqa: E731
    while True:
        before = _polls(sendgrid)
        try:
            result = call()
            break
        except TaskDeferred as deferred:
            polls_in_worker.append(_polls(sendgrid) - before)
            deferrals += 1
            assert isinstance(deferred.trigger, JobTrigger) and deferred.method_name == "resume"
            classpath, kwargs = deferred.trigger.serialize()
            event = fire(JobTrigger(**kwargs))  # rebuilt from its serialized form, as the triggerer does
            assert sorted(event["states"].values()) == ["done"]
            call = lambda e=event: op.resume({}, e)  # noqa: E731

    assert deferrals == 3  # 50, 50 and 20 contacts: a search, a job, a wait, three times
    assert polls_in_worker == [0, 0, 0]  # the worker never asked for a job's status
    assert (result["found"], result["deleted"], result["jobs"], result["status"]) == (120, 120, 3, "verified")
    assert sendgrid.remaining(TENANT)["contacts"] == 0 and sendgrid.remaining(OTHER)["contacts"] == 7
    with Ledger.open(environment) as ledger:
        events = events_of(ledger)
        assert ledger.verify().ok
    polled = [e for e in events if e.kind == "subprocessor.call" and e.payload["operation"] == "job_status"]
    assert len(polled) == 3 * 3  # pending, pending, completed: recorded from what the trigger reported
    assert [e.payload["state"] for e in events if e.kind == "subprocessor.job_finished"] == ["done"] * 3
    assert events[-1].kind == "subprocessor.result"


def test_what_waits_in_airflows_database_holds_no_record_ids(environment, sendgrid, airflow_db) -> None:
    from airflow.sdk.exceptions import TaskDeferred

    with pytest.raises(TaskDeferred) as deferred:
        operator().execute(context={})

    stored = json.dumps(deferred.value.trigger.serialize()[1]) + json.dumps(deferred.value.kwargs or {})
    contacts = sendgrid.contacts[TENANT].values()  # all still there: the first job has not finished
    assert len(contacts) == 120 and TENANT in stored  # the account id is there, as in every event
    assert not any(c["id"] in stored or c["email"] in stored for c in contacts)


def test_a_job_past_its_deadline_fails_the_task_and_the_polls_are_recorded(environment, sendgrid, airflow_db) -> None:
    from airflow.sdk.exceptions import TaskDeferred

    from retention.subprocessors.trigger import JobTrigger

    sendgrid.pending_polls = 10_000  # the provider never finishes
    op = operator()
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context={})
    kwargs = {**deferred.value.trigger.serialize()[1], "deadline": "2026-01-01T00:00:00+00:00"}
    event = fire(JobTrigger(**kwargs))
    assert "not finished within PT1H" in event["error"]

    with pytest.raises(SubprocessorError, match="not finished"):
        op.resume({}, event)
    with Ledger.open(environment) as ledger:
        kinds = [e.kind for e in events_of(ledger)]
    assert kinds[-1] == "subprocessor.call" and "subprocessor.result" not in kinds  # not claimed done
    assert sendgrid.remaining(TENANT)["contacts"] == 120


def test_the_dag_erases_through_the_triggerer(environment, sendgrid, airflow_db) -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    run = run_as(bag.get_dag("subprocessor_erasure"), "alice",
                 run_conf={"account_id": TENANT, "subprocessors": ["sendgrid"]})

    states = {(ti.task_id, ti.map_index): str(ti.state) for ti in run.get_task_instances()}
    assert str(run.state) == "success", states
    assert sendgrid.remaining(TENANT)["contacts"] == 0 and sendgrid.remaining(OTHER)["contacts"] == 7
    with Ledger.open(environment) as ledger:
        results = [e.payload for e in events_of(ledger) if e.kind == "subprocessor.result"]
    assert {r["resource"]: r["status"] for r in results}["contacts"] == "verified"


def _polls(emulator: SendGridEmulator) -> int:
    return sum(1 for c in emulator.requests if c.path.startswith("/v3/marketing/contacts/imports/"))
