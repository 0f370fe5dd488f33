"""The sweep under the CeleryExecutor: Debian's redis-server as the broker, the result backend on the metadata
database, ``airflow celery worker`` on the queues the DAGs use. A worker killed (SIGKILL) in the middle of an
execute task is replaced; Airflow finds the task's heartbeat gone, fails it and retries it, and the run ends
with the totals of an uninterrupted one."""

from __future__ import annotations

import signal
from collections import Counter
from typing import Any

import psutil
import pytest

from tests.e2e.conftest import E2E
from tests.e2e.sweeps import DAG_ID as SWEEP
from tests.e2e.sweeps import check_swept, sweep_conf

EXECUTOR = "CeleryExecutor"
pytestmark = pytest.mark.e2e
PER_AGE = 10  # records per account, table and age: the execute tasks run long enough to be killed mid-run
RETRIED_TIMEOUT = 600.0  # heartbeat timeout, then the DAGs' retry delay (default_args), then the retry itself


@pytest.fixture(scope="module")
def uninterrupted(e2e: E2E) -> Counter[tuple[str, str]]:
    """A sweep on freshly seeded data that nothing disturbs: its records affected per (location, account)."""
    e2e.product.start_offboardings()
    e2e.product.reseed(per_age=PER_AGE)
    before = e2e.product.data.rows()
    run_id = e2e.api.trigger(SWEEP, sweep_conf(e2e.product))
    run = e2e.api.wait_until_finished(SWEEP, run_id)
    assert run["state"] == "success", e2e.api.states(SWEEP, run_id)
    return check_swept(e2e, run_id, before)


def test_a_sweep_runs_on_celery_workers(e2e: E2E, uninterrupted: Counter[tuple[str, str]]) -> None:
    assert sum(uninterrupted.values()) > 0
    worker_log = e2e.airflow.processes["worker"].log.read_text(errors="replace")
    assert "execute_workload" in worker_log and "succeeded in" in worker_log  # the tasks ran in the Celery worker


def test_a_worker_killed_mid_execute_is_retried_to_the_same_totals(e2e: E2E,
                                                                   uninterrupted: Counter[tuple[str, str]]) -> None:
    e2e.product.reseed(per_age=PER_AGE)
    before = e2e.product.data.rows()
    run_id = e2e.api.trigger(SWEEP, sweep_conf(e2e.product))

    victim = e2e.airflow.wait("an execute task running with its ledger task mid-batch",
                              lambda: executing(e2e, run_id), 300, every=0.2)
    kill_worker(e2e)
    _, partial = e2e.product.sweep_totals(run_id)
    assert sum(partial.values()) < sum(uninterrupted.values())  # killed before the run's end
    e2e.airflow.start_worker()

    run = e2e.api.wait_until_finished(SWEEP, run_id, timeout=RETRIED_TIMEOUT)

    assert run["state"] == "success", e2e.api.states(SWEEP, run_id)
    retried = {(ti["task_id"], ti["map_index"]): ti["try_number"] for ti in e2e.api.task_instances(SWEEP, run_id)}
    assert retried[(victim["task_id"], victim["map_index"])] >= 2  # failed by heartbeat timeout, then retried
    assert check_swept(e2e, run_id, before) == uninterrupted


def executing(e2e: E2E, run_id: str) -> dict[str, Any] | None:
    """A running execute task instance, while the ledger holds a task of the run claimed and unfinished."""
    running = [ti for ti in e2e.api.task_instances(SWEEP, run_id)
               if ti["task_id"].startswith("execute_") and ti["state"] == "running"]
    if not running:
        return None
    with e2e.product.ledger() as ledger:
        runs = ledger.open_runs("sweep", airflow_run_id=run_id)
        busy = [t for r in runs for t in ledger.tasks(r.id) if t.status == "running"]
    return next((ti for ti in running if any(ti["rendered_map_index"] == t.location for t in busy)), None)


def kill_worker(e2e: E2E) -> None:
    """SIGKILL the worker's process group and every process under it (a task's supervisor may start its own
    group); wait until all are gone."""
    worker = e2e.airflow.processes["worker"]
    tree = [psutil.Process(worker.popen.pid), *psutil.Process(worker.popen.pid).children(recursive=True)]
    worker.kill_group(signal.SIGKILL)
    for process in tree:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(tree, timeout=30)
    worker.popen.wait(timeout=30)
