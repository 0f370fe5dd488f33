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


def statement(source: SqlSource, account_id: str | None = None) -> sa.Select[*tuple[Any, ...]]:  # any column type
    """SELECT each named column AS its Account field, from the table or the configured query; with ``account_id``,
    only the rows whose id column holds it (``WHERE id = :account_id``)."""
    named = source.columns.named()
    if source.table is not None:
        schema, _, name = source.table.rpartition(".")
        table = sa.table(name, *(sa.column(c) for c in set(named.values())), schema=schema or None)
        select = sa.select(*(table.c[column].label(field) for field, column in named.items()))
        id_column = table.c[named["id"]]
    else:
        query = str(source.query).strip().rstrip(";")
        select = sa.select(*(sa.column(column).label(field) for field, column in named.items())) \
            .select_from(sa.text(f"({query}) AS registry_rows"))
        id_column = sa.column(named["id"])
    if account_id is None:
        return select
    # The id column holds text: a registry row whose id is not a string is refused (rules.accounts), whole or by id.
    # Compared as it is, so the table's index on it is used.
    return select.where(id_column == sa.bindparam("account_id", account_id, type_=sa.Text))


def read_sql(source: SqlSource, ruleset: RuleSet, account_id: str | None = None) -> Registry:
    """The whole registry, or with ``account_id`` that account's rows only (every one of them: two rows of one id
    are both refused, as in a whole read)."""
    engine = sql_engine(source.conn_id)
    where = "row" if account_id is None else "id lookup row"
    with engine.connect() as conn, conn.begin():
        conn.execute(sa.text("SET TRANSACTION READ ONLY"))  # first in the transaction, as PostgreSQL requires
        result = conn.execute(statement(source, account_id),
                              execution_options={"stream_results": True, "yield_per": source.fetch_rows})
        rows: Iterator[tuple[str, Mapping[str, object]]] = (
            (f"{where} {n}", dict(row)) for n, row in enumerate(result.mappings(), 1))
        registry = collect(rows, ruleset, source.label)
    return registry if account_id is None else registry.only(account_id)
