"""Daily care of data subject requests: mail on-call the open requests near or past their legal deadline (within
``RETENTION_SUBJECT_DEADLINE_WARNING_DAYS``; GDPR Art. 12(3) one month, CCPA 45 days), and erase the identifiers
of requests closed more than ``RETENTION_SUBJECT_APPEAL_DAYS`` ago (their keyed hashes stay in the ledger's chain),
and delete the access packages whose download link has expired (not while a legal hold on the account is in force).

The alert names ids, accounts, statuses and dates only, never an identifier; with nothing near its deadline no mail
is sent. Every step is safe to retry: what was erased or removed is not acted on again. A failure mails
on-call (``retention.dagkit.notify``).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from retention.dagkit.defaults import default_args, on_dag_failure
from retention.ledger import Ledger
from retention.settings import Settings

ACTOR = "airflow:subject_request_housekeeping"


@dag(dag_id="subject_request_housekeeping", schedule="@daily", start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
     catchup=False, max_active_runs=1, tags=["retention", "subject-requests"], doc_md=__doc__,
     default_args=default_args(), on_failure_callback=on_dag_failure())
def subject_request_housekeeping() -> None:
    @task
    def deadline_alerts() -> list[str]:
        from retention.dagkit.notify import PREFIX, Mail, send
        from retention.requests.housekeeping import alert_lines

        settings = Settings.from_env()
        with Ledger.open(settings.database_url) as ledger:
            lines = alert_lines(ledger, settings, pendulum.now("UTC"))
        if lines:
            send(Mail(f"{PREFIX} {len(lines)} data subject request(s) near or past their legal deadline",
                      (*lines, "Each must be answered by its deadline: see `retention request show <id>`.")))
        return lines

    @task
    def erase_identifiers() -> list[str]:
        from retention.requests.housekeeping import erase_closed_identifiers

        settings = Settings.from_env()
        with Ledger.open(settings.database_url) as ledger:
            return erase_closed_identifiers(ledger, settings, pendulum.now("UTC"), actor=ACTOR)

    @task
    def remove_expired_packages() -> list[str]:
        from retention.requests.access import remove_expired
        from retention.stores import s3_client

        settings = Settings.from_env()
        with Ledger.open(settings.database_url) as ledger:
            return remove_expired(ledger, client=s3_client(settings.returns_conn_id), bucket=settings.returns_bucket,
                                  now=pendulum.now("UTC"), actor=ACTOR)

    deadline_alerts()
    erase_identifiers()
    remove_expired_packages()


subject_request_housekeeping()
