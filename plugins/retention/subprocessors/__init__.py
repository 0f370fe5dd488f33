"""Subprocessor erasure: declarative connector specs run by one generic executor.

``erase(spec, resource, account_id, ledger=..., actor=...)`` runs one resource in one process; it
builds the HTTP client from the spec's Airflow Connection and appends every call, intent, outcome
and verification to the ledger. The DAG uses ``eraser(...)`` to ``begin`` and ``resume`` around the
async jobs it waits for in the triggerer (``retention.subprocessors.trigger``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from retention.ledger import Ledger
from retention.subprocessors.connection import Credentials
from retention.subprocessors.context import Record, RecordedIdsReader
from retention.subprocessors.errors import SubprocessorError
from retention.subprocessors.executor import Eraser
from retention.subprocessors.http import Client
from retention.subprocessors.results import Progress, ResourceResult
from retention.subprocessors.spec import ConnectorSpec, RecordedIds, load_spec, load_specs

__all__ = ["ConnectorSpec", "Credentials", "Progress", "ResourceResult", "SubprocessorError", "erase", "eraser",
           "load_spec", "load_specs", "recorded_ids_from_airflow"]


def erase(spec: ConnectorSpec, resource: str, account_id: str, *, ledger: Ledger, actor: str,
          run_id: str | None = None, credentials: Credentials | None = None, cutoff: datetime | None = None,
          recorded_ids: RecordedIdsReader | None = None,
          sleep: Callable[[float], None] | None = None) -> ResourceResult:
    """Erase one resource of one account at one subprocessor, recording every step in the ledger;
    async jobs are polled in this process."""
    with eraser(spec, resource, account_id, ledger=ledger, actor=actor, run_id=run_id, credentials=credentials,
                recorded_ids=recorded_ids, sleep=sleep) as running:
        return running.erase(resource, account_id, cutoff=cutoff)


@contextmanager
def eraser(spec: ConnectorSpec, resource: str, account_id: str, *, ledger: Ledger, actor: str,
           run_id: str | None = None, credentials: Credentials | None = None,
           recorded_ids: RecordedIdsReader | None = None,
           sleep: Callable[[float], None] | None = None) -> Iterator[Eraser]:
    """An ``Eraser`` whose calls and events go to the ledger, its client open for the block."""
    def record(kind: str, payload: dict[str, Any]) -> None:
        ledger.append(kind, payload, actor=actor, run_id=run_id)

    credentials = credentials or Credentials.from_connection(spec)
    pause = sleep or time.sleep
    with Client(spec, credentials, on_call=call_recorder(spec, resource, account_id, record), sleep=pause) as client:
        yield Eraser(spec, client, record, holds=ledger.holds_in_force,
                     recorded_ids=recorded_ids or recorded_ids_from_airflow, sleep=pause)


def call_recorder(spec: ConnectorSpec, resource: str, account_id: str,
                  record: Record) -> Callable[[dict[str, Any]], None]:
    """What the client reports of each HTTP call, as a ``subprocessor.call`` event."""
    def on_call(call: dict[str, Any]) -> None:
        record("subprocessor.call", {"subprocessor": spec.subprocessor, "resource": resource,
                                     "account_id": account_id, **call})

    return on_call


def recorded_ids_from_airflow(recorded: RecordedIds, account_id: str) -> list[str]:
    """Ids the application recorded at creation, read through the spec's SQL Connection."""
    import sqlalchemy as sa

    from retention.stores import sql_engine

    engine = sql_engine(recorded.conn_id)
    table = sa.Table(recorded.table.split(".")[-1], sa.MetaData(),
                     schema=recorded.table.split(".")[0] if "." in recorded.table else None, autoload_with=engine)
    query = sa.select(table.c[recorded.id_column]).where(table.c[recorded.account_column] == account_id)
    if recorded.kind_column:
        query = query.where(table.c[recorded.kind_column] == recorded.kind)
    with engine.connect() as conn:
        return [str(v) for v in conn.scalars(query.order_by(table.c[recorded.id_column]))]
