"""The destructive statements of one batch: delete (children first), anonymize, isolate.

Each is built with SQLAlchemy Core from the reflected tables with bound values, and returned as work for
one bounded transaction (``transactions.BoundedTransactions.run``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy import and_, delete, func, select, update
from sqlalchemy.sql.elements import ColumnElement

from retention.stores.sql.schema import Column, LocationSchema
from retention.stores.sql.selection import RowSelection, is_hashed


def delete_rows(schema: LocationSchema, rows: RowSelection, parents: ColumnElement[bool], after: str | None,
                upper: str) -> Callable[[sa.Connection], tuple[int, dict[str, int]]]:
    """Children first, then the location's rows ``parents`` selects: (rows, {child table: rows})."""

    def work(conn: sa.Connection) -> tuple[int, dict[str, int]]:
        children: dict[str, int] = {}
        for child in schema.children:
            fk_in = child.fk.in_(select(schema.key).where(parents))
            owned: ColumnElement[bool] = fk_in
            if child.range_hint:  # the same rows, found through the foreign key's index
                owned = and_(fk_in, *rows.key_range(child.fk, after, upper))
            result = conn.execute(delete(child.table).where(owned))
            children[child.table.fullname] = children.get(child.table.fullname, 0) + result.rowcount
        return conn.execute(delete(schema.table).where(parents)).rowcount, children

    return work


def anonymize_rows(schema: LocationSchema, where: ColumnElement[bool], salt: str) -> Callable[[sa.Connection], int]:
    """One UPDATE: ``set_null`` columns become NULL, ``hash`` columns the hex sha256 of value || salt
    (NULL stays NULL; a value already hashed is kept). Returns the rows changed."""
    values: dict[str, Any] = {c.name: None for c in schema.null_columns}
    bound_salt = sa.bindparam("retention_salt", salt, type_=sa.Text)
    for column in schema.hash_columns:
        values[column.name] = sa.case((is_hashed(column), column), else_=sha256_hex(column, bound_salt))
    statement = update(schema.table).where(where).values(values)
    return lambda conn: conn.execute(statement).rowcount


def isolated_table(schema: LocationSchema, isolate_to: str | None) -> sa.Table:
    """The ``isolate_to`` table, refused unless it holds every column of the location's table."""
    if isolate_to is None:
        raise ValueError(f"location {schema.location_id}: systems.yaml names no isolate_to table")
    vault = schema.reflect(isolate_to, "isolate_to")
    missing = sorted({c.name for c in schema.table.columns} - {c.name for c in vault.columns})
    if missing:
        schema.refuse(f"isolate_to: {vault.fullname} lacks the columns {', '.join(missing)}")
    return vault


def isolate_rows(schema: LocationSchema, vault: sa.Table,
                 parents: ColumnElement[bool]) -> Callable[[sa.Connection], int]:
    """Move the rows ``parents`` selects to ``vault`` in one statement: the rows deleted are exactly the
    rows inserted (``WITH moved AS (DELETE … RETURNING …) INSERT … SELECT FROM moved``)."""
    table = schema.table
    columns = [c.name for c in table.columns]
    moved = delete(table).where(parents).returning(*table.columns).cte("moved")
    move = sa.insert(vault).from_select(columns, select(*(moved.c[name] for name in columns))) \
        .returning(vault.c[schema.key.name])  # the driver's rowcount is -1 for this statement
    return lambda conn: len(conn.execute(move).all())


def sha256_hex(column: Column, salt: sa.BindParameter[str]) -> ColumnElement[str]:
    """Hex sha256 of ``column || salt`` computed by PostgreSQL (NULL in, NULL out)."""
    return func.encode(func.sha256(func.convert_to(column.concat(salt), "UTF8")), "hex", type_=sa.Text)
