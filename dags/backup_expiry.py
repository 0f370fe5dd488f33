"""Daily: write each account's encrypted backup copy, destroy per-account keys whose deletion window ended
(not while a legal hold is in force), expire snapshots and copies past the backup rule (not while held),
confirm that recorded snapshots are gone, and issue certificate supplements for the accounts whose backup
line is now complete.

A failed task retries what passes and fails at once on a refusal; a retried copy task writes another copy of the
accounts its failed try had copied (recorded and expired like any copy). ``supplement`` is not retried (see its
comment). A failure mails on-call (``retention.dagkit.notify``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pendulum
from airflow.sdk import dag, task

from retention.dagkit.defaults import default_args, on_dag_failure

if TYPE_CHECKING:
    from retention.certificates.archive import SavedSupplement

ACTOR = "airflow:backup_expiry"


@dag(dag_id="backup_expiry", schedule="@daily", start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
     catchup=False, max_active_runs=1, tags=["retention", "backups"], doc_md=__doc__, default_args=default_args(),
     on_failure_callback=on_dag_failure())
def backup_expiry() -> None:
    @task  # a Mapping result: Airflow pushes each key as its own XCom too (multiple_outputs), as before
    def copy_accounts() -> Mapping[str, Any]:
        from retention.offboarding.backups import daily_copies

        return daily_copies(actor=ACTOR)

    @task(trigger_rule="all_done")  # a failed copy must not keep a due key from being destroyed
    def confirm() -> list[str]:
        from retention.offboarding import tasks

        return tasks.confirm_backups(actor=ACTOR)

    # Signs: runs on the worker that alone holds the signing key (docker-compose.yml). retries=0: a retry would sign
    # a second supplement for each account its failed try had supplemented; on-call supplements the others
    # (``retention certificate supplement``).
    @task(queue="certify", retries=0)
    def supplement(accounts: list[str]) -> list[SavedSupplement]:
        from retention.offboarding import tasks

        return tasks.supplement_certificates(accounts, actor=ACTOR)

    confirmed = confirm()
    copy_accounts() >> confirmed  # a copy written today is expired by its own rule, never before it exists
    # Airflow types a task call with the function's parameters; the XComArg becomes the list at run time.
    supplement(confirmed)  # type: ignore[arg-type]


backup_expiry()
