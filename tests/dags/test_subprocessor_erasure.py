"""The subprocessor_erasure DAG through dag.test(): the manual fallback waits for a human attestation."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from retention.ledger import Ledger
from retention.triggered import run_as

DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def erasure_dag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    dag = bag.get_dag("subprocessor_erasure")
    # Airflow 3.3.2's dag.test() runs a DAG's own failure callbacks itself, in a context rebuilt from the serialized
    # tasks, whose Params without a default fail validation before the run's conf is applied (ParamValidationError
    # out of dag.test()). Under the scheduler the dag processor runs them on the parsed DAG (tests/e2e); here the
    # DAG-level notifier is left out, each task's own stays (test_dag_integrity checks both are declared).
    dag.on_failure_callback, dag.has_on_failure_callback = None, False
    return dag


@pytest.fixture
def ledger_url(tmp_path, monkeypatch) -> str:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    monkeypatch.setenv("RETENTION_DATABASE_URL", url)
    Ledger.open(url).close()
    return url


def answer_when_asked(dag_id: str, task_id: str, chosen: list[str], params: dict, *, user: str = "dpo-7",
                      role: str = "op", timeout: float = 600) -> threading.Thread:
    """Answer a HITL task from another thread as the SimpleAuthManager user ``user`` with ``role`` (as their JWT
    gives them to Airflow's HITL REST route), through the same function that route calls."""
    def respond() -> None:
        try:
            answer()
        except BaseException as exc:  # surfaced by the test through thread.error
            thread.error = exc
            raise

    def answer() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if try_once():
                    return
            except Exception as exc:  # SQLite "database is locked" while dag.test() writes: try again
                thread.attempt_errors.append(repr(exc))
            time.sleep(0.5)
        raise TimeoutError(f"{task_id} never waited for input: {thread.attempt_errors[-3:]}")

    def try_once() -> bool:
        from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
        from airflow.api_fastapi.core_api.datamodels.hitl import UpdateHITLDetailPayload
        from airflow.api_fastapi.core_api.routes.public.hitl import update_hitl_detail
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session
        from airflow.utils.state import TaskInstanceState

        with create_session() as session:
            ti = session.query(TaskInstance).filter_by(dag_id=dag_id, task_id=task_id,
                                                        state=TaskInstanceState.AWAITING_INPUT).first()
            if ti is None:
                return False
            update_hitl_detail(dag_id=dag_id, dag_run_id=ti.run_id, task_id=task_id,
                               update_hitl_detail_payload=UpdateHITLDetailPayload(chosen_options=chosen,
                                                                                  params_input=params),
                               user=SimpleAuthManagerUser(username=user, role=role), session=session,
                               map_index=-1)
        return True

    thread = threading.Thread(target=respond, daemon=True)
    thread.error = None
    thread.attempt_errors = []
    thread.start()
    return thread


def test_every_spec_has_a_group_and_api_specs_run_in_their_own_pool(erasure_dag) -> None:
    from retention.dagkit.hitl import ManualAttestation

    tasks = {t.task_id: t for t in erasure_dag.tasks}
    assert tasks["twilio.erase_1"].pool == "subprocessor_twilio"
    assert tasks["openai.erase_2"].upstream_task_ids == {"openai.erase_1"}  # items before conversations
    assert {"sixsense.open_request", "sixsense.attest", "sixsense.record"} <= set(tasks)
    assert isinstance(tasks["sixsense.attest"], ManualAttestation)
    assert tasks["sixsense.attest"].request_task_id == "sixsense.open_request"  # its form times out at that deadline


def test_a_manual_subprocessor_waits_for_the_attestation_and_the_ledger_keeps_it(erasure_dag, ledger_url) -> None:
    from retention.subprocessors.tasks import ATTEST

    helper = answer_when_asked("subprocessor_erasure", "sixsense.attest", [ATTEST],
                               {"ticket_reference": "6S-PRIV-4411", "confirmed_on": "2026-11-20",
                                "evidence_sha256": "ab" * 32})
    run = run_as(erasure_dag, "alice", run_conf={"account_id": "acct_1001", "subprocessors": ["sixsense"]})
    helper.join(timeout=5)

    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert str(run.state) == "success", states
    assert states["sixsense.record"] == "success" and states["twilio.selected"] == "skipped"
    with Ledger.open(ledger_url) as ledger:
        events = [e for e in ledger.events() if e.kind.startswith("subprocessor.")]
        assert ledger.verify().ok
        attested = events[1].payload
        ticket = ledger.text(attested["ticket_reference_sha256"])  # kept erasable, outside the chain
    assert [e.kind for e in events] == ["subprocessor.manual_requested", "subprocessor.attested"]
    assert events[0].payload["requested_by"] == "api:alice"  # the Airflow user who triggered the run
    assert "ticket_reference" not in attested
    assert (ticket, attested["confirmed_on"], attested["attested_by_user_id"]) == \
        ("6S-PRIV-4411", "2026-11-20", "dpo-7")


def test_without_a_confirmation_the_run_fails_and_the_ledger_says_so(erasure_dag, ledger_url) -> None:
    from retention.subprocessors.tasks import NOT_CONFIRMED

    helper = answer_when_asked("subprocessor_erasure", "clearbit.attest", [NOT_CONFIRMED], {})
    run = run_as(erasure_dag, "alice", run_conf={"account_id": "acct_1001", "subprocessors": ["clearbit"]})
    helper.join(timeout=5)

    assert str(run.state) == "failed"
    with Ledger.open(ledger_url) as ledger:
        kinds = [e.kind for e in ledger.events() if e.kind.startswith("subprocessor.")]
    assert kinds == ["subprocessor.manual_requested", "subprocessor.attestation_declined"]


def test_a_run_nobody_triggered_erases_and_requests_nothing(erasure_dag, ledger_url) -> None:
    """The scheduler or an internal trigger makes runs without a user: no one to record as the requester."""
    run = run_as(erasure_dag, None, run_conf={"account_id": "acct_1001", "subprocessors": ["sixsense", "sendgrid"]})

    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert str(run.state) == "failed"
    assert states["sixsense.open_request"] == "failed" and states["sendgrid.selected"] == "failed", states
    assert states["sendgrid.erase_1"] == "upstream_failed" and states["sixsense.attest"] == "upstream_failed"
    with Ledger.open(ledger_url) as ledger:
        assert list(ledger.events()) == []
