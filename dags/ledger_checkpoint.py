"""Daily: sign the ledger chain's last event and publish it outside the ledger database.

Thin on purpose: one task calls retention.ledger.checkpoints.publish_configured. The key file and the store
come from the RETENTION_CHECKPOINT_* settings (a directory in the embedded stack, an S3 bucket under Object
Lock in production). Certificates publish one each as they are issued; this run covers every other event
and any publish that failed after a certificate. The task fails if the ledger no longer matches the last
checkpoint: run `retention ledger verify`. A failed try is retried (publishing is idempotent: a head
published already is returned as it is); a failure mails on-call (``retention.dagkit.notify``).
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import dag, task

from retention.dagkit.defaults import default_args, on_dag_failure


@dag(dag_id="ledger_checkpoint", schedule="@daily", start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
     catchup=False, max_active_runs=1, tags=["retention", "ledger"], doc_md=__doc__,
     default_args=default_args(), on_failure_callback=on_dag_failure())
def ledger_checkpoint() -> None:
    @task(queue="certify")  # signs: runs on the worker that alone holds the checkpoint key (docker-compose.yml)
    def publish() -> dict[str, Any] | None:
        from retention.ledger import Ledger
        from retention.ledger.checkpoints import publish_configured

        with Ledger.open() as ledger:
            checkpoint = publish_configured(ledger)
        return checkpoint.body() if checkpoint else None

    publish()


ledger_checkpoint()
