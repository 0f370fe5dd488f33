"""Termination offboarding: return or delete everything of one customer, backups and subprocessors
included, keep what law requires isolated, and certify it.

plan -> four-eyes approval -> (return package -> wait for receipt or the window's end) -> execute
(mapped per location, one ``execute_<kind>`` task and pool per store kind of ``retention.stores.kinds``)
-> verify -> backups, and beside them one task group per subprocessor -> certificate and customer link.

Thin: every task calls one function of ``retention.offboarding.tasks``; the engine, stores and
subprocessor operator are the sweep's, and the subprocessor groups are ``subprocessor_erasure``'s
(``retention.dagkit.subprocessor_groups``: the same pools and rate limits), each skipped unless the
``subprocessors`` param names it; a manual spec's request is opened, not awaited: the certificate lists it
as an exception until the provider confirms. The conf is validated by the Params below before any task runs,
and again whole by the plan task. The requester is the Airflow user who triggered the run (Airflow's REST
API or UI sets it from the caller's login); a run without one plans nothing. On reject the approval skips
everything after it and the ledger says who rejected and why. Clearing a failed task resumes the same ledger
run. A failed task retries what passes and fails at once on a refusal; the approval form and the certificate
are not retried (see their comments). A failure mails on-call (``retention.dagkit.notify``).
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.providers.standard.sensors.date_time import DateTimeSensorAsync
from airflow.sdk import Param, PokeReturnValue, dag, get_current_context, task

from retention.dagkit.approval import FourEyesApproval
from retention.dagkit.defaults import default_args, on_dag_failure
from retention.dagkit.hitl import ActionRequired
from retention.dagkit.subprocessor_groups import subprocessor_group
from retention.ids import ACCOUNT_ID
from retention.ledger.fields import TICKET_MAX, TICKET_REFERENCE
from retention.offboarding import tasks as offboarding
from retention.offboarding.request import AGE_RECIPIENT, requester
from retention.settings import Settings
from retention.stores.kinds import KINDS
from retention.subprocessors import tasks as subprocessor_tasks

ACTOR = "airflow:termination_offboarding"
LOCATION = "{{ task.op_kwargs['location'] }}"  # the UI names each mapped task by its location, not its index
SPECS = subprocessor_tasks.specs()
RETURN_POLL_SECONDS = Settings.from_env().return_poll_seconds


@dag(
    dag_id="termination_offboarding",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["retention", "offboarding"],
    doc_md=__doc__,
    default_args=default_args(),
    on_failure_callback=on_dag_failure(),
    params={
        "account_id": Param(type="string", pattern=ACCOUNT_ID, description="The customer's account id."),
        "choice": Param(type="string", enum=["delete", "return"], description="The customer's election (DPA 7(b))."),
        "reference": Param(type="string", maxLength=TICKET_MAX, pattern=TICKET_REFERENCE,
                           description="The ticket of the request, e.g. OFF-1001 "
                                       "(a ticket's shape: it enters the ledger)."),
        "effective_date": Param(None, type=["null", "string"], format="date-time",
                                description="When the contract ends (ISO-8601 with timezone); default: now."),
        "return_recipient": Param(None, type=["null", "string"], pattern=AGE_RECIPIENT,
                                  description="For a return: the customer's age public key (age1...)."),
        "return_window_days": Param(14, type="integer", minimum=0, maximum=30,
                                    description="Days the customer has to confirm receipt before deletion."),
        "subprocessors": Param(sorted(SPECS), type="array", items={"type": "string", "enum": sorted(SPECS)},
                               description="Subprocessors holding the account's data (default: all)."),
    },
)
def termination_offboarding() -> None:
    @task
    def plan() -> dict[str, Any]:
        context = get_current_context()
        params, dag_run = context["params"], context["dag_run"]
        return offboarding.plan(dict(params), requested_by=requester(dag_run), actor=ACTOR,
                                dag_id="termination_offboarding", airflow_run_id=dag_run.run_id)

    @task
    def approval_body(planned: dict[str, Any]) -> str:
        return offboarding.approval_body(planned)

    @task(queue="certify")  # makes the customer's receipt link: runs where the link secret is (docker-compose.yml)
    def deliver_return(planned: dict[str, Any]) -> dict[str, Any] | None:
        params = get_current_context()["params"]
        return offboarding.deliver_return(planned["run_id"], dict(params), actor=ACTOR)

    @task.sensor(poke_interval=RETURN_POLL_SECONDS, timeout=31 * 24 * 3600, mode="reschedule")
    def await_return(planned: dict[str, Any]) -> PokeReturnValue:
        return PokeReturnValue(is_done=offboarding.return_settled(planned["run_id"], actor=ACTOR))

    @task
    def locations(planned: dict[str, Any], kind: str) -> list[str]:
        located: list[str] = planned[kind]
        return located

    @task(map_index_template=LOCATION)
    def execute(location: str, planned: dict[str, Any]) -> dict[str, Any]:
        from retention.engine import tasks

        return tasks.execute(planned["run_id"], location, actor=ACTOR)

    @task(trigger_rule="none_failed", map_index_template=LOCATION)  # an executor mapped over nothing is skipped
    def verify(location: str, planned: dict[str, Any]) -> dict[str, Any]:
        from retention.engine import tasks

        return tasks.verify(planned["run_id"], location, actor=ACTOR)

    @task(trigger_rule="none_failed")
    def backups(planned: dict[str, Any]) -> dict[str, Any]:
        return dict(offboarding.backups(planned["run_id"], actor=ACTOR))

    # A subprocessor not selected is skipped; certify_run checks the ledger. The certify queue's worker alone
    # holds the signing key and the link secret (docker-compose.yml). Retried like any task: a try after the
    # run's certificate was issued makes a new link to it, never a second certificate.
    @task(trigger_rule="none_failed", queue="certify")
    def certify(planned: dict[str, Any]) -> dict[str, Any]:
        return dict(offboarding.certify(planned["run_id"], actor=ACTOR))

    planned = plan()
    approve = FourEyesApproval(
        task_id="approve", subject="Offboarding {{ params.account_id }}: approve the {{ params.choice }}?",
        body="{{ ti.xcom_pull(task_ids='approval_body') }}", run_id="{{ ti.xcom_pull(task_ids='plan')['run_id'] }}",
        actor=ACTOR, retries=0,  # a form: a refused answer (four eyes) must fail the run, not ask again
        notifiers=[ActionRequired()])  # mails the recipients that an approval waits in Required Actions
    effective = DateTimeSensorAsync(task_id="until_effective",
                                    target_time="{{ ti.xcom_pull(task_ids='plan')['effective_at'] }}")
    approval_body(planned) >> approve >> effective  # type: ignore[arg-type]  # Airflow hands the task the XComArg's value
    returned = deliver_return(planned)  # type: ignore[arg-type]  # Airflow hands the task the XComArg's value
    effective >> returned
    settled = await_return(planned)  # type: ignore[arg-type]  # Airflow hands the task the XComArg's value
    returned >> settled

    located = {name: locations.override(task_id=f"{name}_locations")(planned, name) for name in KINDS}  # type: ignore[arg-type]  # Airflow hands the task the XComArg's value
    every = locations.override(task_id="all_locations")(planned, "all")  # type: ignore[arg-type]  # Airflow hands the task the XComArg's value
    settled >> [*located.values(), every]
    executed = [execute.override(task_id=f"execute_{name}", pool=kind.pool,
                                 max_active_tis_per_dag=kind.max_active_tis_per_dag)
                .partial(planned=planned).expand(location=located[name]) for name, kind in KINDS.items()]
    verified = verify.partial(planned=planned).expand(location=every)
    executed >> verified

    # One group per connector spec, in its subprocessor's pool, after the return settled, beside the deletions.
    groups = [subprocessor_group(SPECS[name], actor=ACTOR, plan=planned, attest=False) for name in sorted(SPECS)]
    settled >> groups
    backed = backups(planned)  # type: ignore[arg-type]  # Airflow hands the task the XComArg's value
    verified >> backed
    [backed, *groups] >> certify(planned)  # type: ignore[arg-type]  # Airflow hands the task the XComArg's value


termination_offboarding()
