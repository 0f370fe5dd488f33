"""One subprocessor's erasure as an Airflow task group, the same in every DAG that erases at subprocessors
(``subprocessor_erasure`` and ``termination_offboarding``), so both run in the same pools and rate limits.

The group is named after the subprocessor. An API spec's group is a ``selected`` gate, then one mapped
``EraseResourceOperator`` per resource wave (``erase_1``, ``erase_2``, ...: resources that must wait for others,
``after:``, run in a later wave), each in the subprocessor's own pool (``retention pools sync`` creates it, sized to the
spec's ``rate_limit.concurrency``) and at most that many at once in one DAG. A manual spec's group opens the request
(``open_request``: recorded with its deadline, skipped under a legal hold), then, when the DAG waits for it, a person
attests to the provider's confirmation in a form that times out at that deadline (``attest``) and the answer is
recorded (``record``). A hosted spec's group is the gate alone: systems.yaml's locations erase what the provider hosts.

Every group skips unless the run's ``subprocessors`` param names it, and erases the ``account_id`` param's data. The
requester is the offboarding plan's (``plan``) or else the Airflow user who triggered the run; a run without one
erases and requests nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow.sdk import Param, TaskGroup, XComArg, chain, get_current_context, task
from airflow.sdk.exceptions import AirflowSkipException

from retention.cli.pools import SUBPROCESSOR_POOL
from retention.dagkit.hitl import ManualAttestation
from retention.offboarding.request import requester
from retention.subprocessors import tasks as subprocessor_tasks
from retention.subprocessors.operator import EraseResourceOperator
from retention.subprocessors.spec import ConnectorSpec, waves

ACCOUNT_ID = "{{ params.account_id }}"
Plan = Mapping[str, Any]  # a plan task's return value; its "requested_by" is the run's requester


def subprocessor_group(spec: ConnectorSpec, *, actor: str, plan: XComArg | None = None,
                       attest: bool = True) -> TaskGroup:
    """The task group erasing the run's account at ``spec``'s subprocessor, in the DAG being defined.

    ``plan``: the XCom of a plan task whose ``requested_by`` is the requester (the offboarding's); None: the run's
    triggering user. ``attest``: whether a manual request's group waits for the attestation; False ends it at the
    opened request (the offboarding's certificate states the request as an exception until the provider confirms).
    """
    name = spec.subprocessor
    with TaskGroup(group_id=name) as group:
        if spec.manual is not None:
            _manual(group, name, actor=actor, plan=plan, attest=attest)
        else:
            _api(spec, actor=actor, plan=plan)
    return group


def erasure_order(spec: ConnectorSpec) -> list[list[str]]:
    """The spec's resource waves; the loader has refused a spec whose ``after`` lists form a cycle."""
    order = waves(spec)
    if order is None:
        raise ValueError(f"{spec.subprocessor}: the resources' 'after' lists form a cycle")
    return order


def _api(spec: ConnectorSpec, *, actor: str, plan: XComArg | None) -> None:
    name = spec.subprocessor

    @task(task_id="selected")
    def selected(planned: Plan | None) -> None:
        _selected(name)
        _requested_by(planned)  # someone identified asked for this erasure, or nothing is erased

    gate = selected(plan)  # type: ignore[arg-type]  # Airflow hands the task the XComArg's value
    chain(gate, *(EraseResourceOperator.partial(
        task_id=f"erase_{i}", subprocessor=name, account_id=ACCOUNT_ID, actor=actor,
        pool=SUBPROCESSOR_POOL.format(name=name), max_active_tis_per_dag=spec.rate_limit.concurrency,
    ).expand(resource=resources) for i, resources in enumerate(erasure_order(spec), start=1)))


def _manual(group: TaskGroup, name: str, *, actor: str, plan: XComArg | None, attest: bool) -> None:
    @task(task_id="open_request")
    def open_request(planned: Plan | None) -> dict[str, Any]:
        params = _selected(name)
        opened = subprocessor_tasks.open_manual_request(name, params["account_id"],
                                                        requested_by=_requested_by(planned), actor=actor)
        if "held" in opened:  # nobody is asked to delete what a legal hold keeps; the ledger says which hold
            raise AirflowSkipException(f"{name}: legal hold {', '.join(opened['held'])} in force")
        return opened

    opened = open_request(plan)  # type: ignore[arg-type]  # Airflow hands the task the XComArg's value
    if not attest:
        return
    request_task_id: str = group.child_id("open_request")  # type: ignore[no-untyped-call]  # Airflow leaves it unannotated
    request = f"ti.xcom_pull(task_ids='{request_task_id}')"
    form = ManualAttestation(
        task_id="attest",
        request_task_id=request_task_id,
        subject=f"{name}: attest that the provider deleted account {ACCOUNT_ID}",
        body=(f"File the request at: {{{{ {request}['channel'] }}}}\n\n"
              f"Attach: {{{{ {request}['evidence'] | join('; ') }}}}\n\n"
              f"The provider must confirm by {{{{ {request}['deadline'] }}}}."),
        options=[subprocessor_tasks.ATTEST, subprocessor_tasks.NOT_CONFIRMED],
        defaults=None,
        params={"ticket_reference": Param("", type="string", description="The provider's ticket or case number"),
                "confirmed_on": Param("", type="string",
                                      description="Date of the provider's confirmation (YYYY-MM-DD)"),
                "evidence_sha256": Param("", type="string", description="sha256 of the attached evidence file")},
        retries=0,  # a form: a retry would ask again after the deadline it timed out at; its failure mails on-call
    )

    # retries=0: a retry reads the same answer, so a decline would be recorded again (and an attestation twice);
    # to answer anew, a person clears ``attest``.
    @task(task_id="record", retries=0)
    def record(response: dict[str, Any]) -> dict[str, Any]:
        params = get_current_context()["params"]
        return subprocessor_tasks.record_attestation(name, params["account_id"], response, actor=actor)

    opened >> form
    record(form.output)  # type: ignore[arg-type]  # Airflow hands the task the XComArg's value


def _selected(name: str) -> Mapping[str, Any]:
    """The run's params; skips the task (and so the group after it) unless they name this subprocessor."""
    params: Mapping[str, Any] = get_current_context()["params"]
    if name not in params["subprocessors"]:
        raise AirflowSkipException(f"{name} not selected")
    return params


def _requested_by(planned: Plan | None) -> str:
    """The staff id of who asked: the plan's requester, else the Airflow user who triggered the run (refused when
    there is none, ``request.requester``)."""
    if planned is not None:
        return str(planned["requested_by"])
    return requester(get_current_context()["dag_run"])
