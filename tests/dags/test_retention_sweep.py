"""The retention_sweep DAG through Airflow's dag.test(), on the embedded stack."""

from __future__ import annotations

from pathlib import Path

import pytest

from retention.ledger import Ledger

DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def sweep_dag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    return bag.get_dag("retention_sweep")


def test_the_dag_maps_per_location_with_a_pool_per_store(sweep_dag):
    tasks = {t.task_id: t for t in sweep_dag.tasks}
    assert set(tasks) == {"plan", "sql_locations", "s3_locations", "all_locations", "execute_sql", "execute_s3",
                          "verify", "report"}
    assert (tasks["execute_sql"].pool, tasks["execute_s3"].pool) == ("retention_sql", "retention_s3")
    assert tasks["report"].trigger_rule == "all_done"
    assert sweep_dag.schedule == "@daily" or str(sweep_dag.timetable.summary) == "@daily"


def test_the_sweep_dag_runs_end_to_end(stack, airflow_db, sweep_dag):
    run = sweep_dag.test(run_conf={"at": stack.now.isoformat()})
    assert str(run.state) == "success"
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert set(states.values()) == {"success"}, states
    with Ledger.open(stack.ledger_url) as ledger:
        run_id = ledger.last_run_id("sweep")
        swept = ledger.get_run(run_id)
        tasks = ledger.tasks(run_id)
        assert ledger.verify().ok
    assert (swept.status, swept.dag_id, swept.airflow_run_id) == ("succeeded", "retention_sweep", run.run_id)
    assert sum(t.affected_count for t in tasks) > 0
    assert stack.rows()[("chat_conversations", "acct_4004")] == 0

    # The UI names each mapped task by its location and shows that location's counts as its XCom.
    mapped = {(ti.task_id, ti.map_index): ti.rendered_map_index for ti in run.get_task_instances() if ti.map_index >= 0}
    counts = location_counts(run.run_id)
    assert counts.keys() == mapped.keys() and {t.location for t in tasks} == set(mapped.values())
    for key, summary in counts.items():
        assert summary["location"] == mapped[key]
        assert summary["deleted"] + summary["anonymized"] == sum(
            t.affected_count for t in tasks if t.location == summary["location"] and t.action in ("delete", "anonymize"))
    verified = [c for (task_id, _), c in counts.items() if task_id == "verify"]
    assert sum(c["deleted"] for c in verified) == sum(t.affected_count for t in tasks if t.action == "delete")
    assert all(c["tasks_with_residue"] == 0 and "residue" not in c["tasks"] for c in verified)


def location_counts(airflow_run_id: str) -> dict[tuple[str, int], dict]:
    """The return values of the mapped execute and verify tasks, as the UI shows them."""
    import sqlalchemy as sa
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.execute(sa.select(XComModel.task_id, XComModel.map_index, XComModel.value).where(
            XComModel.dag_id == "retention_sweep", XComModel.run_id == airflow_run_id, XComModel.key == "return_value",
            XComModel.task_id.in_(("execute_sql", "execute_s3", "verify")))).all()
    return {(row.task_id, row.map_index): XComModel.deserialize_value(row) for row in rows}


def test_dry_run_through_the_dag_deletes_nothing(stack, airflow_db, sweep_dag):
    before = stack.rows()
    run = sweep_dag.test(run_conf={"at": stack.now.isoformat(), "dry_run": True})
    assert str(run.state) == "success"
    assert stack.rows() == before


def test_invalid_conf_is_refused_before_any_task_runs(stack, airflow_db, sweep_dag):
    before = stack.rows()
    with pytest.raises(Exception, match="dry_run"):
        sweep_dag.test(run_conf={"dry_run": "yes please"})
    assert stack.rows() == before
