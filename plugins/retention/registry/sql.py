"""The database source: the application's accounts table (or a SELECT over it), through an Airflow Connection.

Read in one READ ONLY transaction (the registry cannot write to the application, whatever a configured query
says), streamed through a server-side cursor so 10,000 accounts are never held twice. Each row is checked on its
own (``retention.registry.base.collect``): a timestamp without a timezone, an unknown state or a terminated
account without an election refuses that row only.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from retention.registry.base import Registry, collect
from retention.stores import sql_engine

if TYPE_CHECKING:
    from retention.registry.config import SqlSource
    from retention.rules import RuleSet


def statement(source: SqlSource) -> sa.Select[*tuple[Any, ...]]:  # application data: any column type
    """SELECT each named column AS its Account field, from the table or the configured query."""
    named = source.columns.named()
    if source.table is not None:
        schema, _, name = source.table.rpartition(".")
        table = sa.table(name, *(sa.column(c) for c in set(named.values())), schema=schema or None)
        return sa.select(*(table.c[column].label(field) for field, column in named.items()))
    query = str(source.query).strip().rstrip(";")
    return sa.select(*(sa.column(column).label(field) for field, column in named.items())) \
        .select_from(sa.text(f"({query}) AS registry_rows"))


def read_sql(source: SqlSource, ruleset: RuleSet) -> Registry:
    engine = sql_engine(source.conn_id)
    with engine.connect() as conn, conn.begin():
        conn.execute(sa.text("SET TRANSACTION READ ONLY"))  # first in the transaction, as PostgreSQL requires
        result = conn.execute(statement(source),
                              execution_options={"stream_results": True, "yield_per": source.fetch_rows})
        rows: Iterator[tuple[str, Mapping[str, object]]] = (
            (f"row {n}", dict(row)) for n, row in enumerate(result.mappings(), 1))
        return collect(rows, ruleset, source.label)
