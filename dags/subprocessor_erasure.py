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

import pendulum
from airflow.sdk.exceptions import AirflowSkipException
from airflow.providers.standard.operators.hitl import HITLEntryOperator
from airflow.sdk import Param, dag, task, task_group

from retention.ids import ACCOUNT_ID
from retention.offboarding.request import requester
from retention.subprocessors import tasks as steps
from retention.subprocessors.operator import EraseResourceOperator
from retention.subprocessors.spec import waves

ACTOR = "airflow:subprocessor_erasure"
SPECS = steps.specs()


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
def subprocessor_erasure():
    for name, spec in sorted(SPECS.items()):
        if spec.manual is None:
            api_group.override(group_id=name)(name, waves(spec), spec.rate_limit.concurrency)
        else:
            manual_group.override(group_id=name)(name)


@task_group
def api_group(name: str, resource_waves: list[list[str]], concurrency: int):
    @task(task_id="selected")
    def selected(params=None, dag_run=None) -> None:
        if name not in params["subprocessors"]:
            raise AirflowSkipException(f"{name} not selected")
        requester(dag_run)  # someone identified asked for this erasure, or nothing is erased

    previous = selected()
    for i, resources in enumerate(resource_waves, start=1):
        wave = EraseResourceOperator.partial(
            task_id=f"erase_{i}", subprocessor=name, account_id="{{ params.account_id }}", actor=ACTOR,
            pool=f"subprocessor_{name}", max_active_tis_per_dag=concurrency,
        ).expand(resource=resources)
        previous >> wave
        previous = wave


@task_group
def manual_group(name: str):
    @task(task_id="open_request")
    def open_request(params=None, dag_run=None) -> dict:
        if name not in params["subprocessors"]:
            raise AirflowSkipException(f"{name} not selected")
        opened = steps.open_manual_request(name, params["account_id"], requested_by=requester(dag_run), actor=ACTOR)
        if "held" in opened:  # nobody is asked to delete what a legal hold keeps; the ledger says which hold
            raise AirflowSkipException(f"{name}: legal hold {', '.join(opened['held'])} in force")
        return opened

    attest = HITLEntryOperator(
        task_id="attest",
        subject=f"{name}: attest that the provider deleted account {{{{ params.account_id }}}}",
        body=("File the request at: {{ ti.xcom_pull(task_ids='" + name + ".open_request')['channel'] }}\n\n"
              "Attach: {{ ti.xcom_pull(task_ids='" + name + ".open_request')['evidence'] | join('; ') }}\n\n"
              "The provider must confirm by {{ ti.xcom_pull(task_ids='" + name + ".open_request')['deadline'] }}."),
        options=[steps.ATTEST, steps.NOT_CONFIRMED],
        defaults=None,
        params={"ticket_reference": Param("", type="string", description="The provider's ticket or case number"),
                "confirmed_on": Param("", type="string", description="Date of the provider's confirmation (YYYY-MM-DD)"),
                "evidence_sha256": Param("", type="string", description="sha256 of the attached evidence file")},
    )

    @task(task_id="record")
    def record(response: dict, params=None) -> dict:
        return steps.record_attestation(name, params["account_id"], response, actor=ACTOR)

    opened = open_request()
    opened >> attest
    record(attest.output)


subprocessor_erasure()
