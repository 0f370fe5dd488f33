"""Erase one customer's data at its subprocessors: one task group per connector spec.

API specs: one mapped task per resource, in the subprocessor's own pool (``subprocessor_<name>``, created by
``retention pools sync`` and sized to the spec's ``rate_limit.concurrency``), so one provider's limits never slow
another. A task whose provider deletes through async jobs defers while they run: the triggerer polls them, no worker
waits. Resources that must wait for others (``after:``, e.g. OpenAI conversation items before their conversations) run
in a later wave. Manual specs (no deletion API): the request is recorded with its deadline, then a person attests to
the provider's confirmation through Airflow's human-in-the-loop form, which reminds before that deadline and fails at
it, and the attestation is recorded. The groups are ``retention.dagkit.subprocessor_groups``'s, the same as
``termination_offboarding``'s.

Only the subprocessors named in ``subprocessors`` run (default: all). The requester is the Airflow user who triggered
the run (``request.requester``; a manual request records it); a run without one erases and requests nothing. A failed
task retries what passes (throttling, a lost connection) and fails at once on a refusal (a hold, invalid input); the
form and the recording of its answer are not retried. A failure mails on-call (``retention.dagkit.notify``).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag

from retention.dagkit.defaults import default_args, on_dag_failure
from retention.dagkit.subprocessor_groups import subprocessor_group
from retention.ids import ACCOUNT_ID
from retention.subprocessors import tasks as subprocessor_tasks

ACTOR = "airflow:subprocessor_erasure"
SPECS = subprocessor_tasks.specs()


@dag(
    dag_id="subprocessor_erasure",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["retention", "subprocessors"],
    doc_md=__doc__,
    default_args=default_args(),
    on_failure_callback=on_dag_failure(),
    params={
        "account_id": Param(type="string", pattern=ACCOUNT_ID, description="The customer's account id."),
        "subprocessors": Param(sorted(SPECS), type="array", items={"type": "string", "enum": sorted(SPECS)},
                               description="Which subprocessors to erase at (default: all)."),
    },
)
def subprocessor_erasure() -> None:
    for name in sorted(SPECS):
        subprocessor_group(SPECS[name], actor=ACTOR)


subprocessor_erasure()
