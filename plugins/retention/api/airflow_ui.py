"""What the operator page needs from Airflow itself: paths into Airflow's UI (a DAG run, the Required Actions that
await a response), when the scheduler next starts the sweep (Airflow's metadata database, read inside the
api-server), and the time zone Airflow is configured with.

Paths are relative to Airflow's base URL, as Airflow's own UI routes them (``airflow/ui``, 3.3): a run is
``/dags/<dag id>/runs/<run id>``; ``/required_actions`` lists human-in-the-loop steps and takes the DAG filter of
its search box from ``dag_display_name_pattern`` (sent to the API as the DAG id pattern) and
``response_received=false`` for those still waiting.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote, urlencode
from zoneinfo import available_timezones

from pendulum.tz.local_timezone import get_local_timezone

from retention.ledger.chain import iso_utc

_log = logging.getLogger(__name__)

SWEEP_DAG_ID = "retention_sweep"  # dags/retention_sweep.py
REFRESH_SECONDS = 60  # how often the page reloads its sections


def run_path(dag_id: str | None, airflow_run_id: str | None) -> str | None:
    """The run's page in Airflow's UI; None for a run Airflow did not make (the CLI's)."""
    if dag_id is None or airflow_run_id is None:
        return None
    return f"/dags/{quote(dag_id, safe='')}/runs/{quote(airflow_run_id, safe='')}"


def required_actions_path(dag_id: str) -> str:
    """Airflow's Required Actions, filtered to the DAG's steps still awaiting a response."""
    return "/required_actions?" + urlencode({"dag_display_name_pattern": dag_id, "response_received": "false"})


@dataclass(frozen=True)
class NextSweep:
    """When the scheduler next starts the sweep, as Airflow's metadata database says; nothing is guessed."""

    at: str | None  # ISO 8601 UTC; None when Airflow schedules none or cannot be asked
    source: Literal["airflow", "unknown"]  # unknown: no such DAG in Airflow's database, or it could not be read
    paused: bool | None  # the sweep DAG is paused (then no sweep starts, and ``at`` is None); None when unknown


UNKNOWN = NextSweep(None, "unknown", None)


def next_sweep() -> NextSweep:
    """The sweep DAG's next run: ``next_dagrun_create_after``, the moment the scheduler creates it (Airflow's REST
    API calls it ``next_dagrun_run_after``; ``next_dagrun`` is its logical date, earlier for an interval
    timetable). A paused or stale DAG starts no run: no time."""
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy import select
    from sqlalchemy.exc import SQLAlchemyError

    query = (select(DagModel.next_dagrun_create_after, DagModel.is_paused, DagModel.is_stale)
             .where(DagModel.dag_id == SWEEP_DAG_ID))
    try:
        with create_session() as session:
            row = session.execute(query).one_or_none()
    except SQLAlchemyError as exc:
        _log.warning("next sweep unknown: Airflow's metadata database could not be read (%s)", type(exc).__name__)
        return UNKNOWN
    if row is None or row.is_stale:  # no scheduler has parsed the DAG (tests), or its file is gone
        return UNKNOWN
    if row.is_paused:
        return NextSweep(None, "airflow", True)
    at = row.next_dagrun_create_after
    return NextSweep(None if at is None else iso_utc(at), "airflow", False)


def default_time_zone() -> str:
    """Airflow's ``[core] default_timezone`` as its IANA name ("system": this server's zone); a fixed offset, which
    names no IANA zone, gives "UTC". Airflow 3.3 has no UI time zone setting: its UI shows the zone the user chose
    there, or the browser's."""
    from airflow.configuration import conf

    configured = conf.get("core", "default_timezone", fallback="utc").strip()
    if configured.casefold() == "system":
        configured = str(get_local_timezone().name)
    zones = {zone.casefold(): zone for zone in available_timezones()}  # "utc" is "UTC", "europe/zurich" ...
    return zones.get(configured.casefold(), "UTC")
