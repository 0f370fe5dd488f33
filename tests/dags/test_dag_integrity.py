"""Every DAG in dags/, as Airflow's own DagBag parses it: no import errors, an owning team, tags and docs, retries
with the retry policy, failure notifications, and pools that ``retention pools sync`` creates."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"
RULES = REPO / "retention_rules"
DAG_IDS = ["backup_expiry", "ledger_checkpoint", "retention_sweep", "subject_request", "subject_request_housekeeping",
           "subprocessor_erasure", "termination_offboarding"]

# Tasks that must not run twice, so are not retried; each DAG file says why beside the task.
NOT_RETRIED = {
    "retention_sweep": {"plan"},  # each try starts a new ledger run
    "termination_offboarding": {"approve"},  # a four-eyes form
    "subject_request": {"approve"},  # a four-eyes form
    "backup_expiry": {"supplement"},  # a second signed supplement
}
NOT_RETRIED_IN_A_GROUP = {"attest", "record"}  # a manual attestation form, and the recording of its answer


@pytest.fixture(scope="module")
def bag() -> Iterator[object]:
    from airflow.dag_processing.dagbag import DagBag

    with pytest.MonkeyPatch.context() as env:
        env.setenv("RETENTION_RULES_DIR", str(RULES))  # the shipped rules and connector specs
        yield DagBag(dag_folder=str(DAGS))


@pytest.fixture(scope="module")
def created_pools() -> set[str]:
    """What ``retention pools sync`` creates for the shipped rules, plus Airflow's own default pool."""
    from retention.cli.pools import pools_the_dags_use
    from retention.settings import Settings

    return {"default_pool", *pools_the_dags_use(Settings.from_env(rules_dir=RULES))}


def pools_nobody_creates(dag, created: set[str]) -> dict[str, str]:
    """task id -> pool, for each task of ``dag`` whose pool is not in ``created``."""
    return {task.task_id: task.pool for task in dag.tasks if task.pool not in created}


def test_every_dag_file_imports_without_errors(bag) -> None:
    assert bag.import_errors == {}
    assert sorted(bag.dag_ids) == DAG_IDS


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_the_dag_has_an_owning_team_tags_and_docs(bag, dag_id) -> None:
    from retention.dagkit.defaults import OWNER

    dag = bag.dags[dag_id]
    assert dag.default_args["owner"] == OWNER != "airflow"
    assert {task.owner for task in dag.tasks} == {OWNER}
    assert "retention" in dag.tags
    assert dag.doc_md and dag.doc_md.strip() == (DAGS / f"{dag_id}.py").read_text().split('"""')[1].strip()


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_tasks_retry_under_the_retry_policy_but_those_that_must_not_run_twice(bag, dag_id) -> None:
    from retention.dagkit.retry import RETRY_POLICY

    dag = bag.dags[dag_id]
    assert dag.default_args["retries"] > 0 and dag.default_args["retry_policy"] is RETRY_POLICY
    not_retried = {task.task_id for task in dag.tasks if not task.retries}
    expected = NOT_RETRIED.get(dag_id, set()) | {
        task.task_id for task in dag.tasks if task.task_group and task.task_id.split(".")[-1] in NOT_RETRIED_IN_A_GROUP}
    assert not_retried == expected
    assert all(task.retry_policy is RETRY_POLICY for task in dag.tasks)


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_a_failure_notifies_from_the_dag_and_from_every_task(bag, dag_id) -> None:
    from retention.dagkit.notify import FailureNotifier

    dag = bag.dags[dag_id]
    assert any(isinstance(callback, FailureNotifier) for callback in dag.on_failure_callback)
    silent = [task.task_id for task in dag.tasks
              if not any(isinstance(callback, FailureNotifier) for callback in task.on_failure_callback or [])]
    assert silent == []


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_every_pool_a_task_names_is_one_pools_sync_creates(bag, created_pools, dag_id) -> None:
    assert pools_nobody_creates(bag.dags[dag_id], created_pools) == {}


def test_the_pool_check_sees_a_pool_nobody_creates(bag, created_pools) -> None:
    """The check is not vacuous: a task in a pool that ``pools sync`` does not create is reported."""
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG

    with DAG("bogus_pool", schedule=None) as dag:
        EmptyOperator(task_id="stuck", pool="subprocessor_nobody")
        EmptyOperator(task_id="fine")
    assert pools_nobody_creates(dag, created_pools) == {"stuck": "subprocessor_nobody"}


def test_the_subprocessor_groups_share_pools_and_limits_across_both_dags(bag, created_pools) -> None:
    """The offboarding erases in the same groups as subprocessor_erasure: same pools, same per-DAG concurrency."""
    def erasures(dag_id: str) -> dict[str, tuple[str, int | None]]:
        return {task.task_id: (task.pool, task.max_active_tis_per_dag) for task in bag.dags[dag_id].tasks
                if task.task_id.split(".")[-1].startswith("erase_")}

    erasure, offboarding = erasures("subprocessor_erasure"), erasures("termination_offboarding")
    assert erasure and erasure == offboarding
    assert {pool for pool, _ in erasure.values()} <= created_pools - {"default_pool"}


def test_the_sweep_has_the_deadline_alert_of_its_window(bag) -> None:
    from retention.dagkit.notify import sweep_deadline

    assert bag.dags["retention_sweep"].deadline == [sweep_deadline()]


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_every_form_mails_that_it_waits_for_an_answer(bag, dag_id) -> None:
    from airflow.providers.standard.operators.hitl import HITLOperator

    from retention.dagkit.hitl import ActionRequired

    forms = [task for task in bag.dags[dag_id].tasks if isinstance(task, HITLOperator)]
    assert all(any(isinstance(n, ActionRequired) for n in form.notifiers) for form in forms), \
        [form.task_id for form in forms]
