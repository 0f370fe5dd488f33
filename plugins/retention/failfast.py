"""Refused input fails an Airflow task at once, without its retries: a retry would be refused the same way.

A ledger guard rejection (``PersonalDataError``), a field of the wrong shape (``FieldError``) or any other
``ValueError`` about the task's input is not a passing fault. Airflow retries a failed task unless it raised
``AirflowFailException``, so the input refusals of a task's step are turned into one, message unchanged
(it names the field, never the value).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def input_refusals_fail_the_task() -> Iterator[None]:
    try:
        yield
    except ValueError as exc:
        # Imported here: the CLI and the API share the steps' modules and do not load Airflow's task SDK.
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(str(exc)) from exc
