"""Set-based statements for a cohort: many accounts of one location, each with its own cutoff, in one statement.

Accounts that share a cutoff (most do: one per jurisdiction and customer instruction) are one filter, ``account =
ANY(:ids) AND anchor <= :cutoff``, OR-ed over at most ``FEW_CUTOFFS`` cutoffs. Beyond that the accounts and their
cutoffs travel as two arrays, one bound parameter each, unnested into a derived table ``cohort(account_id,
cutoff)`` that the location's table is joined to on ``account = account_id AND anchor <= cutoff``. A NULL anchor
never matches; a cohort with no anchor matches every row of its accounts. Every statement below is constant in
number whatever the number of accounts:

- ``next_range``: the next ``size`` keys of the table after the cursor (an index walk), as (upper key, per-account
  counts of the cohort's rows in that range);
- ``count_in_range``: per account, the matching rows in (after, upper] (crash recovery);
- ``delete_rows``: children first, then ``DELETE … USING cohort … RETURNING account``, counted per account by the
  server.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql.elements import ColumnElement

from retention.stores.base import Cohort
from retention.stores.sql.schema import LocationSchema
from retention.stores.sql.selection import RowSelection, cutoff_value

FEW_CUTOFFS = 16  # up to this many distinct cutoffs in a cohort, a filter per cutoff; beyond, a join to the cutoffs


class CohortRows:
    """The cohort's rows of one location as SQLAlchemy Core clauses, every value bound."""

    def __init__(self, schema: LocationSchema, rows: RowSelection, cohort: Cohort) -> None:
        self._schema = schema
        self._rows = rows
        # The account column's own values (integer, uuid or text), mapped back to the ids the ledger knows.
        self.ids: dict[Any, str] = {rows.read(schema.account, a, "account id"): a for a in cohort.cutoffs}
        accounts = sa.bindparam("cohort_accounts", list(self.ids), type_=ARRAY(schema.account.type))
        if cohort.anchor is None:
            self.source: sa.FromClause | None = None
            self.match: ColumnElement[bool] = schema.account == sa.any_(accounts)
            return
        column = schema.timestamps.get(cohort.anchor)
        if column is None:
            raise ValueError(f"location {schema.location_id}: no timestamp column for anchor {cohort.anchor!r} "
                             f"(the spec maps {sorted(schema.timestamps)})")
        cutoffs = []
        for account_id in self.ids.values():
            cutoff = cohort.cutoffs[account_id]
            if cutoff is None:  # Cohort refuses this; never read an anchor without a cutoff as "all"
                raise ValueError(f"location {schema.location_id}: account {account_id} has an anchor but no cutoff")
            cutoffs.append(cutoff_value(column, cutoff))
        by_cutoff: dict[Any, list[Any]] = {}
        for value, bound_cutoff in zip(self.ids, cutoffs, strict=True):
            by_cutoff.setdefault(bound_cutoff, []).append(value)
        if len(by_cutoff) <= FEW_CUTOFFS:
            # Accounts mostly share a few cutoffs (one per jurisdiction and customer instruction): one hashed
            # ``account = ANY(:ids) AND anchor <= :cutoff`` per cutoff is a filter on each row, cheaper than a join.
            self.source = None
            self.match = or_(*(and_(schema.account == sa.any_(sa.bindparam(f"cohort_accounts_{i}", values,
                                                                            type_=ARRAY(schema.account.type))),
                                    column <= sa.bindparam(f"cohort_cutoff_{i}", cutoff, type_=column.type))
                               for i, (cutoff, values) in enumerate(sorted(by_cutoff.items()))))
            return
        bound = sa.bindparam("cohort_cutoffs", cutoffs, type_=ARRAY(column.type))
        self.source = func.unnest(accounts, bound).table_valued("account_id", "cutoff").render_derived(name="cohort")
        self.match = and_(schema.account == self.source.c.account_id, column <= self.source.c.cutoff)

    def where(self, after: str | None, upper: str | None) -> ColumnElement[bool]:
        return and_(self.match, *self._rows.key_range(self._schema.key, after, upper))

    def select_from(self, *columns: sa.ColumnElement[Any], after: str | None,
                    upper: str | None) -> sa.Select[Any]:
        query = select(*columns).select_from(self._schema.table)
        if self.source is not None:
            query = query.select_from(self.source)
        return query.where(self.where(after, upper))

    def account_of(self, value: Any) -> str:
        return self.ids[value]


def next_range(conn: sa.Connection, cohort: CohortRows, schema: LocationSchema, rows: RowSelection,
               after: str | None, size: int) -> tuple[str, dict[str, int]] | None:
    """The next range of ``size`` keys of the table after ``after`` (whoever's rows they are), as (its upper key,
    per account the cohort's matching rows in it); None past the last key. A range is found by walking the key's
    index, never by sorting the cohort's matches (which costs a scan of every remaining match per batch); the
    counts come from the range alone. A range may hold none of the cohort's rows: the caller moves on."""
    key = schema.key
    span = select(key.label("key")).where(*rows.key_range(key, after, None)).order_by(key).limit(size).subquery()
    upper = conn.execute(select(span.c.key).order_by(span.c.key.desc()).limit(1)).scalar()
    if upper is None:
        return None
    return str(upper), count_in_range(conn, cohort, schema, after, str(upper))


def count_in_range(conn: sa.Connection, cohort: CohortRows, schema: LocationSchema, after: str | None,
                   upper: str) -> dict[str, int]:
    query = cohort.select_from(schema.account, func.count(), after=after, upper=upper).group_by(schema.account)
    return {cohort.account_of(row[0]): int(row[1]) for row in conn.execute(query)}


def delete_rows(schema: LocationSchema, rows: RowSelection, cohort: CohortRows, after: str | None,
                upper: str) -> Callable[[sa.Connection], tuple[dict[str, int], dict[str, int]]]:
    """Children first, then the cohort's rows in (after, upper]: ({account id: rows}, {child table: rows})."""

    def work(conn: sa.Connection) -> tuple[dict[str, int], dict[str, int]]:
        children: dict[str, int] = {}
        parents = cohort.select_from(schema.key, after=after, upper=upper)
        for child in schema.children:
            owned: ColumnElement[bool] = child.fk.in_(parents)
            if child.range_hint:  # the same rows, found through the foreign key's index
                owned = and_(owned, *rows.key_range(child.fk, after, upper))
            result = conn.execute(delete(child.table).where(owned))
            children[child.table.fullname] = children.get(child.table.fullname, 0) + result.rowcount
        # Counted by the server (a DELETE … RETURNING in a CTE, grouped): one row per account, not per deleted row.
        gone = delete(schema.table).where(cohort.where(after, upper)).returning(schema.account.label("account"))
        removed = gone.cte("removed")
        counted = select(removed.c.account, func.count()).group_by(removed.c.account)
        deleted = {cohort.account_of(value): int(n) for value, n in conn.execute(counted)}
        return deleted, children

    return work
