"""Erase one customer's data at its subprocessors: one task group per connector spec.

API specs: one mapped task per resource, in the subprocessor's own pool (``subprocessor_<name>``, sized
to the spec's ``rate_limit.concurrency``), so one provider's limits never slow another. A task whose
provider deletes through async jobs defers while they run: the triggerer polls them, no worker waits. Resources that
must wait for others (``after:``, e.g. OpenAI conversation items before their conversations) run in
a later wave. Manual specs
(no deletion API): the request is recorded with its deadline, then a person attests to the
provider's confirmation through Airflow's human-in-the-loop form, and the attestation is recorded.
Only the subprocessors named in ``subprocessors`` run (default: all). The requester is the Airflow user who triggered
the run (``request.requester``; a manual request records it); a run without one erases and requests nothing.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.providers.standard.operators.hitl import HITLEntryOperator
from airflow.sdk import Param, chain, dag, task, task_group
from airflow.sdk.exceptions import AirflowSkipException

from retention.ids import ACCOUNT_ID
from retention.offboarding.request import requester
from retention.subprocessors import tasks as subprocessor_tasks
from retention.subprocessors.operator import EraseResourceOperator
from retention.subprocessors.spec import ConnectorSpec, waves

ACTOR = "airflow:subprocessor_erasure"
SPECS = subprocessor_tasks.specs()


@dag(
    dag_id="subprocessor_erasure",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["retention", "subprocessors"],
    params={
        "account_id": Param(type="string", pattern=ACCOUNT_ID, description="The customer's account id."),
        "subprocessors": Param(sorted(SPECS), type="array", items={"type": "string", "enum": sorted(SPECS)},
                               description="Which subprocessors to erase at (default: all)."),
    },
)
def subprocessor_erasure() -> None:
    for name, spec in sorted(SPECS.items()):
        if spec.manual is None:
            api_group.override(group_id=name)(name, erasure_order(spec), spec.rate_limit.concurrency)
        else:
            manual_group.override(group_id=name)(name)


def erasure_order(spec: ConnectorSpec) -> list[list[str]]:
    """The spec's resource waves; the loader has refused a spec whose ``after`` lists form a cycle."""
    order = waves(spec)
    if order is None:
        raise ValueError(f"{spec.subprocessor}: the resources' 'after' lists form a cycle")
    return order


def given(params: dict[str, Any] | None) -> dict[str, Any]:
    """The run's params, which Airflow passes to a task that names them (None only outside a run)."""
    if params is None:
        raise RuntimeError("no params: this task runs only in a DAG run")
    return params


@task_group
def api_group(name: str, resource_waves: list[list[str]], concurrency: int) -> None:
    @task(task_id="selected")
    def selected(params: dict[str, Any] | None = None, dag_run: object = None) -> None:
        if name not in given(params)["subprocessors"]:
            raise AirflowSkipException(f"{name} not selected")
        requester(dag_run)  # someone identified asked for this erasure, or nothing is erased

    chain(selected(), *(EraseResourceOperator.partial(
        task_id=f"erase_{i}", subprocessor=name, account_id="{{ params.account_id }}", actor=ACTOR,
        pool=f"subprocessor_{name}", max_active_tis_per_dag=concurrency,
    ).expand(resource=resources) for i, resources in enumerate(resource_waves, start=1)))


@task_group
def manual_group(name: str) -> None:
    @task(task_id="open_request")
    def open_request(params: dict[str, Any] | None = None, dag_run: object = None) -> dict[str, Any]:
        params = given(params)
        if name not in params["subprocessors"]:
            raise AirflowSkipException(f"{name} not selected")
        opened = subprocessor_tasks.open_manual_request(name, params["account_id"], requested_by=requester(dag_run),
                                                        actor=ACTOR)
        if "held" in opened:  # nobody is asked to delete what a legal hold keeps; the ledger says which hold
            raise AirflowSkipException(f"{name}: legal hold {', '.join(opened['held'])} in force")
        return opened

    attest = HITLEntryOperator(
        task_id="attest",
        subject=f"{name}: attest that the provider deleted account {{{{ params.account_id }}}}",
        body=("File the request at: {{ ti.xcom_pull(task_ids='" + name + ".open_request')['channel'] }}\n\n"
              "Attach: {{ ti.xcom_pull(task_ids='" + name + ".open_request')['evidence'] | join('; ') }}\n\n"
              "The provider must confirm by {{ ti.xcom_pull(task_ids='" + name + ".open_request')['deadline'] }}."),
        options=[subprocessor_tasks.ATTEST, subprocessor_tasks.NOT_CONFIRMED],
        defaults=None,
        params={"ticket_reference": Param("", type="string", description="The provider's ticket or case number"),
                "confirmed_on": Param("", type="string",
                                      description="Date of the provider's confirmation (YYYY-MM-DD)"),
                "evidence_sha256": Param("", type="string", description="sha256 of the attached evidence file")},
    )

    @task(task_id="record")
    def record(response: dict[str, Any], params: dict[str, Any] | None = None) -> dict[str, Any]:
        return subprocessor_tasks.record_attestation(name, given(params)["account_id"], response, actor=ACTOR)

    opened = open_request()
    opened >> attest
    record(attest.output)  # type: ignore[arg-type]  # Airflow's @task types the call as the function, not XComArg


subprocessor_erasure()
