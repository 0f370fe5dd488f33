"""Data subject request (DPA 5(a)): find, export or erase one person's data within one customer account, on
the customer's instruction, with a signed certificate of an erasure.

open_request -> expand -> preview -> (nothing found: close) or (approval: none at or below
``RETENTION_SUBJECT_APPROVAL_RECORDS`` records, else a second person in Required Actions) -> for an erasure,
execute (mapped per location, one ``execute_<kind>`` task and pool per store kind of ``retention.stores.kinds``)
-> verify -> one ``at_<subprocessor>`` task per connector spec the preview found the person at (in that
subprocessor's pool) -> close -> certificate; for an access request, package (encrypted to the customer's age key,
manifest with sha256 per file, expiring link) -> close.

Thin: every task calls one function of ``retention.requests``; the engine executes and verifies each location's
task with a selector of the person's records only, checks legal holds before every batch and writes intent and
outcome. The conf is validated by the Params below before any task runs, and again whole when the request is
filed. A request filed by the customer API or ``retention request file`` is run by its ``request_id`` alone: its
identifiers stay in the ledger's erasable store. Identifiers typed into this form stay in Airflow's dag_run conf
(Airflow's metadata database), so staff file through the CLI when they can. The filer of a request filed here is
the Airflow user who triggered the run (a run without one files nothing); a request filed elsewhere keeps its
filer, who may not approve it. On reject every later task is skipped and the ledger closes the request as
rejected. A failed task leaves the request open (the deadline alerts of ``subject_request_housekeeping`` list it):
clearing it resumes the same ledger run. The approval form is not retried (see its comment). A failure mails
on-call (``retention.dagkit.notify``).
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import Param, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowSkipException

from retention.cli.pools import SUBPROCESSOR_POOL
from retention.dagkit.approval import SubjectRequestApproval
from retention.dagkit.defaults import default_args, on_dag_failure
from retention.dagkit.hitl import ActionRequired
from retention.ids import ACCOUNT_ID
from retention.ledger.fields import TICKET_MAX, TICKET_REFERENCE
from retention.offboarding.request import AGE_RECIPIENT, requester
from retention.requests import tasks as requests
from retention.rules.subjects import IDENTIFIER_KINDS, MAX_VALUES, REGIMES
from retention.stores.kinds import KINDS
from retention.subprocessors import tasks as subprocessor_tasks

ACTOR = "airflow:subject_request"
LOCATION = "{{ task.op_kwargs['location'] }}"  # the UI names each mapped task by its location, not its index
SPECS = subprocessor_tasks.specs()
REQUEST_ID = r"^[0-9a-f]{32}$"


def _pool(name: str) -> str:
    """The subprocessor's own pool for an API spec (``retention pools sync`` makes it); else Airflow's default."""
    spec = SPECS[name]
    return SUBPROCESSOR_POOL.format(name=name) if spec.manual is None and spec.resources else "default_pool"


@dag(
    dag_id="subject_request",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["retention", "subject-requests"],
    doc_md=__doc__,
    default_args=default_args(),
    on_failure_callback=on_dag_failure(),
    params={
        "request_id": Param(None, type=["null", "string"], pattern=REQUEST_ID,
                            description="A request already filed by the customer API or `retention request file` "
                                        "(its identifiers stay in the ledger); the fields below are then not needed."),
        "account_id": Param(None, type=["null", "string"], pattern=ACCOUNT_ID, description="The customer's account."),
        "request_type": Param(None, type=["null", "string"], enum=[None, "access", "erasure"],
                              description="What the data subject asks for (rectification is out of scope)."),
        "identifiers": Param(None, type=["null", "object"], additionalProperties=False, minProperties=1,
                             properties={kind: {"type": "array", "items": {"type": "string"}, "minItems": 1,
                                                "maxItems": MAX_VALUES} for kind in IDENTIFIER_KINDS},
                             description="Who the person is: " + ", ".join(IDENTIFIER_KINDS) + " -> values. Typed "
                                         "here they stay in Airflow's dag_run conf; the customer API and `retention "
                                         "request file` keep them in the ledger only and pass request_id."),
        "reference": Param(None, type=["null", "string"], maxLength=TICKET_MAX, pattern=TICKET_REFERENCE,
                           description="The customer's reference, e.g. DSR-1001 (a ticket's shape: its digest "
                                       "enters the ledger)."),
        "received_on": Param(None, type=["null", "string"], format="date",
                             description="The day the customer received the request (YYYY-MM-DD): its legal "
                                         "deadline counts from it."),
        "regime": Param(None, type=["null", "string"], enum=[None, *REGIMES],
                        description="gdpr (one month), ccpa (45 days) or fadp (30 days); default: from the account's "
                                    "jurisdiction."),
        "recipient": Param(None, type=["null", "string"], pattern=AGE_RECIPIENT,
                           description="For an access request: the customer's age public key (age1...) the "
                                       "package is encrypted to (with request_id: default, the key it was filed "
                                       "with)."),
        "subprocessors": Param(None, type=["null", "array"], items={"type": "string", "enum": sorted(SPECS)},
                               description="Subprocessors to ask about the person (default: every one)."),
    },
)
def subject_request() -> None:
    @task
    def open_request() -> dict[str, Any]:
        context = get_current_context()
        params, dag_run = context["params"], context["dag_run"]
        filed = {k: v for k, v in params.items() if k != "subprocessors"}  # which to ask is the preview's
        return requests.open_request(filed, filed_by=requester(dag_run), actor=ACTOR)

    @task
    def expand(opened: dict[str, Any]) -> dict[str, Any]:
        return requests.expand(opened["request_id"], actor=ACTOR)

    @task
    def preview(opened: dict[str, Any]) -> dict[str, Any]:
        context = get_current_context()
        return requests.preview(opened["request_id"], actor=ACTOR, dag_id="subject_request",
                                airflow_run_id=context["dag_run"].run_id,
                                subprocessors=context["params"]["subprocessors"])

    @task.branch
    def route(previewed: dict[str, Any]) -> str:
        """Nothing found: close at once. Else approve a small request here, or ask a second person."""
        if previewed["nothing_found"]:
            return "close"
        return "approval_body" if requests.approve_if_small(previewed["request_id"], actor=ACTOR) else "approved"

    @task
    def approval_body(previewed: dict[str, Any]) -> str:
        return requests.approval_body(previewed)

    @task
    def locations(previewed: dict[str, Any], kind: str) -> list[str]:
        located: list[str] = previewed[kind]
        return located

    @task(map_index_template=LOCATION)
    def execute(location: str, previewed: dict[str, Any]) -> dict[str, Any]:
        from retention.engine import tasks

        return tasks.execute(previewed["run_id"], location, account_id=previewed["account_id"], actor=ACTOR)

    @task(trigger_rule="none_failed", map_index_template=LOCATION)  # an executor mapped over nothing is skipped
    def verify(location: str, previewed: dict[str, Any]) -> dict[str, Any]:
        from retention.engine import tasks

        return tasks.verify(previewed["run_id"], location, account_id=previewed["account_id"], actor=ACTOR)

    # After the locations are verified (or had nothing to run); skipped when approval was never reached.
    @task(trigger_rule="none_failed_min_one_success")
    def at_subprocessor(previewed: dict[str, Any], name: str) -> dict[str, Any]:
        if previewed["request_type"] != "erasure" or name not in [*previewed["subprocessors"], *previewed["manual"]]:
            raise AirflowSkipException(f"the preview found nothing of this person to erase at {name}")
        return requests.at_subprocessor(previewed["request_id"], name, actor=ACTOR)

    @task
    def package(previewed: dict[str, Any]) -> dict[str, Any]:
        if previewed["request_type"] != "access":
            raise AirflowSkipException("an erasure request returns nothing")
        from retention.requests.access import deliver

        params = get_current_context()["params"]
        return dict(deliver(previewed["request_id"], params["recipient"], actor=ACTOR,
                            subprocessors=params["subprocessors"]))

    @task(trigger_rule="none_failed_min_one_success")
    def close(previewed: dict[str, Any]) -> dict[str, Any]:
        return requests.close(previewed["request_id"], actor=ACTOR)

    # The certify queue's worker alone holds the signing key (docker-compose.yml). Retried like any task: a try
    # after the request's certificate was issued answers with that one, never a second certificate.
    @task(queue="certify")
    def certify(previewed: dict[str, Any], closed: dict[str, Any]) -> dict[str, Any]:
        if previewed["request_type"] != "erasure":
            raise AirflowSkipException("an access request's evidence is its package (subject.exported)")
        # A failed request is refused (NotCertifiable): the run fails and mails on-call.
        return requests.certify(closed["request_id"], actor=ACTOR)

    opened = open_request()
    previewed = preview(opened)  # type: ignore[arg-type]  # Airflow hands the task the XComArg's value
    expand(opened) >> previewed  # type: ignore[arg-type]  # Airflow hands the task the XComArg's value
    routed = route(previewed)  # type: ignore[arg-type]  # Airflow hands the task the XComArg's value
    approve = SubjectRequestApproval(
        task_id="approve", subject="Subject request {{ ti.xcom_pull(task_ids='open_request')['request_id'] }}: "
                                   "approve the {{ ti.xcom_pull(task_ids='open_request')['request_type'] }}?",
        body="{{ ti.xcom_pull(task_ids='approval_body') }}",
        request_id="{{ ti.xcom_pull(task_ids='open_request')['request_id'] }}",
        run_id="{{ ti.xcom_pull(task_ids='preview')['run_id'] }}",  # the preview the form shows, and no other
        actor=ACTOR, retries=0,  # a form: a refused answer (four eyes) must fail the run, not ask again
        notifiers=[ActionRequired()])  # mails the recipients that an approval waits in Required Actions
    # The join of both ways to an approval; nothing acts before it.
    approved = EmptyOperator(task_id="approved", trigger_rule="none_failed_min_one_success")
    routed >> approval_body(previewed) >> approve >> approved  # type: ignore[arg-type]  # Airflow hands the task the XComArg's value
    routed >> approved

    # The location lists are read from the preview, not behind the approval, so that a run the branch closed at
    # once maps its verification over an empty list (skipped) rather than over a list never made.
    located = {name: locations.override(task_id=f"{name}_locations")(previewed, name) for name in KINDS}  # type: ignore[arg-type]  # Airflow hands the task the XComArg's value
    every = locations.override(task_id="all_locations")(previewed, "all")  # type: ignore[arg-type]  # Airflow hands the task the XComArg's value
    executed = [execute.override(task_id=f"execute_{name}", pool=kind.pool,
                                 max_active_tis_per_dag=kind.max_active_tis_per_dag)
                .partial(previewed=previewed).expand(location=located[name]) for name, kind in KINDS.items()]
    approved >> executed
    verified = verify.partial(previewed=previewed).expand(location=every)
    executed >> verified

    asked = [at_subprocessor.override(task_id=f"at_{name}", pool=_pool(name))(previewed, name)  # type: ignore[arg-type]  # Airflow hands the task the XComArg's value
             for name in sorted(SPECS)]
    approved >> asked
    verified >> asked
    packaged = package(previewed)  # type: ignore[arg-type]  # Airflow hands the task the XComArg's value
    approved >> packaged
    closed = close(previewed)  # type: ignore[arg-type]  # Airflow hands the task the XComArg's value
    routed >> closed
    [*asked, packaged] >> closed
    certify(previewed, closed)  # type: ignore[arg-type]  # Airflow hands the task the XComArg's value


subject_request()
