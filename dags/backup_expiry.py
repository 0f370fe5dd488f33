"""Daily: destroy per-account data keys whose deletion window ended, confirm that recorded snapshots have
expired, and issue certificate supplements for the accounts whose backup line is now complete."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

ACTOR = "airflow:backup_expiry"


@dag(dag_id="backup_expiry", schedule="@daily", start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
     catchup=False, max_active_runs=1, tags=["retention", "backups"])
def backup_expiry():
    @task
    def confirm() -> list[str]:
        from retention.offboarding import tasks

        return tasks.confirm_backups(actor=ACTOR)

    @task
    def supplement(accounts: list[str]) -> list[dict]:
        from retention.offboarding import tasks

        return tasks.supplement_certificates(accounts, actor=ACTOR)

    supplement(confirm())


backup_expiry()
