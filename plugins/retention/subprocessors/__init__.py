"""Subprocessor erasure: declarative connector specs run by one generic executor.

``erase(spec, resource, account_id, ledger=..., actor=...)`` is what DAG tasks and the CLI call; it
builds the HTTP client from the spec's Airflow Connection and appends every call, intent, outcome
and verification to the ledger.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from retention.subprocessors.executor import Eraser, ResourceResult
from retention.subprocessors.http import Client, Credentials, SubprocessorError
from retention.subprocessors.spec import ConnectorSpec, load_spec, load_specs

__all__ = ["ConnectorSpec", "Credentials", "ResourceResult", "SubprocessorError", "erase", "load_spec",
           "load_specs", "recorded_ids_from_airflow"]


def erase(spec: ConnectorSpec, resource: str, account_id: str, *, ledger: Any, actor: str,
          run_id: str | None = None, credentials: Credentials | None = None, cutoff: datetime | None = None,
          recorded_ids: Any = None, sleep: Any = None) -> ResourceResult:
    """Erase one resource of one account at one subprocessor, recording every step in the ledger."""
    def record(kind: str, payload: dict) -> None:
        ledger.append(kind, payload, actor=actor, run_id=run_id)

    def on_call(call: dict) -> None:
        record("subprocessor.call", {"subprocessor": spec.subprocessor, "resource": resource,
                                     "account_id": account_id, **call})

    credentials = credentials or Credentials.from_connection(spec)
    options = {"sleep": sleep} if sleep else {}
    with Client(spec, credentials, on_call=on_call, **options) as client:
        eraser = Eraser(spec, client, record, recorded_ids=recorded_ids or recorded_ids_from_airflow, **options)
        return eraser.erase(resource, account_id, cutoff=cutoff)


def recorded_ids_from_airflow(recorded: Any, account_id: str) -> list[str]:
    """Ids the application recorded at creation, read through the spec's SQL Connection."""
    import sqlalchemy as sa

    from retention.stores import _sql_engine

    engine = _sql_engine(recorded.conn_id)
    table = sa.Table(recorded.table.split(".")[-1], sa.MetaData(),
                     schema=recorded.table.split(".")[0] if "." in recorded.table else None, autoload_with=engine)
    query = sa.select(table.c[recorded.id_column]).where(table.c[recorded.account_column] == account_id)
    if recorded.kind_column:
        query = query.where(table.c[recorded.kind_column] == recorded.kind)
    with engine.connect() as conn:
        return [str(v) for v in conn.scalars(query.order_by(table.c[recorded.id_column]))]
