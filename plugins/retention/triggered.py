"""``dag.test()`` runs triggered by a named Airflow user, for the demo and the DAG tests.

The offboarding's requester is the run's ``triggering_user_name``, which Airflow's REST API sets to the
signed-in user's ``get_name()``. Airflow 3.3.2's ``dag.test()`` has no argument for it: it creates its run
through ``airflow.models.dagrun.get_or_create_dagrun`` with ``triggering_user_name="dag_test"``. ``run_as``
passes the given user name (or none) to that same call instead and changes nothing else (the run stays a MANUAL run
triggered by TEST), so a test can play "alice triggered it, bob approves it" with real Airflow users.
Production runs never go through here: ``retention offboard`` triggers through the REST API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from unittest.mock import patch

if TYPE_CHECKING:
    from airflow.models.dagrun import DagRun
    from airflow.sdk import DAG


def run_as(dag: DAG, user_name: str | None, **test_kwargs: Any) -> DagRun:
    """``dag.test(**test_kwargs)`` with the run's ``triggering_user_name`` set to ``user_name`` (None: no user,
    as when the scheduler or an internal trigger makes the run)."""
    from airflow.models import dagrun

    create = dagrun.get_or_create_dagrun

    def as_user(**kwargs: Any) -> DagRun:
        return create(**{**kwargs, "triggering_user_name": user_name})

    # Airflow 3.3.2's dag.test() runs a DAG-level failure callback in a context rebuilt from the serialized tasks,
    # where Params without a default fail validation: a failed run would raise ParamValidationError instead of
    # being returned. The scheduler's dag-processor runs the callback from the parsed DAG (tests/e2e).
    dag.on_failure_callback, dag.has_on_failure_callback = None, False
    with patch.object(dagrun, "get_or_create_dagrun", as_user):
        run: DagRun = dag.test(**test_kwargs)  # DAG.test is unannotated; it returns the DagRun it made
    return run
