"""The ``default_args`` every retention DAG starts from, and the failure callback its DAG object gets.

One owning team (the one that carries the pager); three retries with exponential backoff (the first after
``RETENTION_RETRY_DELAY_SECONDS``, default two minutes) for what passes (a lock timeout, throttling, a lost
connection); the retry policy (``retry.RETRY_POLICY``) that fails a refusal at once (a
hold, a delete-all filter, a ``max_records`` overrun, invalid input), since a retry would be refused the same way; and
the failure notifier on every task. A task that must not run twice sets ``retries=0`` itself, saying why.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from retention.dagkit.notify import FailureNotifier
from retention.dagkit.retry import RETRY_POLICY
from retention.settings import Settings

if TYPE_CHECKING:
    from airflow.sdk import Context

OWNER = "privacy-engineering"
RETRIES = 3
MAX_RETRY_DELAY = timedelta(minutes=30)


def default_args() -> dict[str, Any]:
    """A fresh mapping for a DAG's ``default_args`` (Airflow types it ``dict[str, Any]``); each task takes these
    unless it names its own."""
    return {
        "owner": OWNER,
        "retries": RETRIES,
        "retry_delay": timedelta(seconds=Settings.from_env().retry_delay_seconds),
        # By default at least 2, 4, 8 minutes (Airflow adds up to as much again, per task instance): a throttled
        # provider or a busy database gets room. The retry policy's rules set their own delay for the faults they name.
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": MAX_RETRY_DELAY,
        "retry_policy": RETRY_POLICY,
        "on_failure_callback": [FailureNotifier()],
    }


def on_dag_failure() -> list[Callable[[Context], None]]:
    """The DAG-level ``on_failure_callback``: one mail when a run fails, besides the failed task's own."""
    return [FailureNotifier()]
