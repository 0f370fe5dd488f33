"""Daily: write each account's encrypted backup copy, destroy per-account keys whose deletion window ended
(not while a legal hold is in force), expire snapshots and copies past the backup rule (not while held),
confirm that recorded snapshots are gone, and issue certificate supplements for the accounts whose backup
line is now complete."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pendulum
from airflow.sdk import dag, task

if TYPE_CHECKING:
    from retention.certificates.archive import SavedSupplement

ACTOR = "airflow:backup_expiry"


@dag(dag_id="backup_expiry", schedule="@daily", start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
     catchup=False, max_active_runs=1, tags=["retention", "backups"])
def backup_expiry() -> None:
    @task  # a Mapping result: Airflow pushes each key as its own XCom too (multiple_outputs), as before
    def copy_accounts() -> Mapping[str, Any]:
        from retention.offboarding.backups import daily_copies

        return daily_copies(actor=ACTOR)

    @task(trigger_rule="all_done")  # a failed copy must not keep a due key from being destroyed
    def confirm() -> list[str]:
        from retention.offboarding import tasks

        return tasks.confirm_backups(actor=ACTOR)

    @task(queue="certify")  # signs: runs on the worker that alone holds the signing key (docker-compose.yml)
    def supplement(accounts: list[str]) -> list[SavedSupplement]:
        from retention.offboarding import tasks

        return tasks.supplement_certificates(accounts, actor=ACTOR)

    confirmed = confirm()
    copy_accounts() >> confirmed  # a copy written today is expired by its own rule, never before it exists
    # Airflow types a task call with the function's parameters; the XComArg becomes the list at run time.
    supplement(confirmed)  # type: ignore[arg-type]


backup_expiry()
