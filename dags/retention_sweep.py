"""Daily retention sweep: plan -> execute (mapped per location) -> verify (mapped) -> report -> terminations.

Thin on purpose: every task calls one function of retention.engine.tasks. Mapping is per location
(one data class each) and, for a location with many records due, per shard of its accounts (one per
RETENTION_SHARD_RECORDS, at most its pool's slots), never per account: accounts are batched inside a task,
so a map stays far below Airflow's 1,024 limit, the XComs carry ids and counts only, and the scheduler's load
does not grow with the customer count. Each store kind
(``retention.stores.kinds``) has its own execute task, ``execute_<kind>``, in its own pool, so a sweep
cannot flood the production database; a kind with no location to work on is skipped. While the DAG run is going,
a retried (or cleared) execute task resumes the same ledger run from its checkpoints; once ``report`` has closed
the ledger run as failed, nothing more is deleted in it, and a new run plans what is still due.

A location the plan would make a large share of due at once (RETENTION_MASS_DELETION_SHARE) is kept and
the run fails, unless the ``acknowledge_mass_deletion`` param names it. The last task fails while a
termination's offboarding is overdue: the sweep never deletes a terminated account, its offboarding does.

A failed task retries what passes (a lock timeout, a lost connection) and fails at once on a refusal; ``plan`` is
not retried (see its comment). A failure mails on-call, and so does a run still unfinished at its deadline
(``retention.dagkit.notify.sweep_deadline``): the sweep must finish within its window every day.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

from retention.dagkit.defaults import default_args, on_dag_failure
from retention.dagkit.notify import sweep_deadline
from retention.stores.kinds import KINDS

if TYPE_CHECKING:
    from retention.engine.shards import ShardDict

ACTOR = "airflow:retention_sweep"
# The UI names each mapped task by its location (and shard), not its index.
LOCATION = ("{{ task.op_kwargs['location'] }}{% set shard = task.op_kwargs.get('shard') %}"
            "{% if shard %} (shard {{ shard['index'] + 1 }} of {{ shard['count'] }}){% endif %}")


@dag(
    dag_id="retention_sweep",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["retention"],
    doc_md=__doc__,
    default_args=default_args(),
    on_failure_callback=on_dag_failure(),
    deadline=sweep_deadline(),
    params={
        "dry_run": Param(False, type="boolean", description="Plan and count; delete nothing."),
        "at": Param(None, type=["null", "string"], format="date-time",
                    description="Decide as of this instant (ISO-8601, with timezone); default: now."),
        "acknowledge_mass_deletion": Param(
            [], type="array", items={"type": "string"}, uniqueItems=True,
            description="Location ids this run may delete more than the threshold's share of at once "
                        "(the plan of a dry run names them). Any other such location is kept and the run fails."),
    },
)
def retention_sweep() -> None:
    # retries=0: each try starts a new ledger run, and a failed try's run would stay open beside the retry's;
    # tomorrow's sweep plans again, or on-call triggers one once the cause is fixed.
    @task(retries=0)
    def plan() -> dict[str, Any]:
        from retention.engine import tasks

        context = get_current_context()
        params, dag_run = context["params"], context["dag_run"]
        return tasks.plan(at=params["at"], dry_run=params["dry_run"], actor=ACTOR, dag_id="retention_sweep",
                          airflow_run_id=dag_run.run_id, acknowledge_mass_deletion=params["acknowledge_mass_deletion"])

    @task
    def locations(run: dict[str, Any]) -> list[str]:
        """Every location the plan has work in, as a list Airflow can map over."""
        located: list[str] = run["all"]
        return located

    @task
    def work(run: dict[str, Any], kind: str) -> list[dict[str, Any]]:
        """The plan's locations of one kind, each once per shard when the plan split it (``shard`` None when not)."""
        items: list[dict[str, Any]] = []
        for location in run[kind]:
            split = run["shards"].get(location) or [None]
            items += [{"location": location, "shard": shard if len(split) > 1 else None} for shard in split]
        return items

    @task(map_index_template=LOCATION)
    def execute(location: str, run: dict[str, Any], shard: ShardDict | None = None) -> dict[str, Any]:
        from retention.engine import tasks

        return tasks.execute(run["run_id"], location, actor=ACTOR, shard=shard)

    @task(trigger_rule="all_done", map_index_template=LOCATION)
    def verify(location: str, run: dict[str, Any]) -> dict[str, Any]:
        from retention.engine import tasks

        return tasks.verify(run["run_id"], location, actor=ACTOR)

    @task(trigger_rule="all_done")
    def report(run: dict[str, Any]) -> dict[str, Any]:
        from retention.engine import tasks

        return tasks.report(run["run_id"], actor=ACTOR)

    @task(trigger_rule="all_done")
    def overdue_terminations(run: dict[str, Any]) -> dict[str, Any]:
        """After the sweep's own work, whatever its outcome: fails while a termination is overdue."""
        from retention.engine import tasks

        return tasks.check_terminations(run["run_id"], actor=ACTOR)

    run = plan()
    executed = [execute.override(task_id=f"execute_{name}", pool=kind.pool,
                                 max_active_tis_per_dag=kind.max_active_tis_per_dag)
                .partial(run=run).expand_kwargs(work.override(task_id=f"{name}_locations")(run, name))  # type: ignore[arg-type]  # Airflow hands the task the XComArg's value
                for name, kind in KINDS.items()]
    every = locations.override(task_id="all_locations")(run)  # type: ignore[arg-type]  # Airflow hands the task the XComArg's value
    verified = verify.partial(run=run).expand(location=every)
    executed >> verified >> report(run) >> overdue_terminations(run)  # type: ignore[arg-type]  # Airflow hands the task the XComArg's value


retention_sweep()
