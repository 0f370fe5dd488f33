"""Per-account counts over one SQL location, set-based: a constant number of grouped statements for any
number of accounts.

One statement counts every asked account's rows (``account = ANY(:ids) GROUP BY account``). The due counts
take one statement per (anchor, pending_anonymize) pair the ``Due``s use: the table joined to
``unnest(:ids, :cutoffs)``, each array bound as ONE parameter of the column's own type, so each account is
compared with its own cutoff under the same rule as ``count`` (``selection.cutoff_value``). A ``Due`` without
an anchor counts all of its account's rows. The ids are read as the account column's type the way ``count``
reads them, and each count is given back under the id it was asked for.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine, func, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql.elements import ColumnElement

from retention.stores.base import Due, Tally, due_by_account
from retention.stores.sql.schema import LocationSchema
from retention.stores.sql.selection import RowSelection, cutoff_value

_Group = tuple[str | None, bool]  # (anchor, pending_anonymize): one statement each


def tally_rows(engine: Engine, schema: LocationSchema, rows: RowSelection, accounts: Collection[str],
               due: Collection[Due]) -> dict[str, Tally]:
    """Per asked account with rows here: its rows and those its ``Due`` matches (0 without a ``Due``)."""
    asked = set(accounts)
    by_account = due_by_account(f"location {schema.location_id}", asked, due, "rows")
    if not asked:
        return {}
    ids = ids_by_value(rows, schema, asked)
    groups: dict[_Group, list[Due]] = defaultdict(list)
    for wanted in by_account.values():
        groups[(wanted.selector.anchor, wanted.pending_anonymize)].append(wanted)
    with engine.connect() as conn:
        totals = _per_account(conn, _totals(schema, list(ids)), ids)
        due_counts: dict[str, int] = {}
        for (anchor, pending), members in groups.items():
            value_of = {original: value for value, originals in ids.items() for original in originals}
            named: dict[Any, list[str]] = defaultdict(list)  # only this group's accounts get its counts
            for member in members:
                named[value_of[member.selector.account_id]].append(member.selector.account_id)
            due_counts.update(_per_account(conn, _due(schema, rows, anchor, pending, members, value_of), named))
    return {account: Tally(total, due_counts.get(account, 0)) for account, total in totals.items()}


def ids_by_value(rows: RowSelection, schema: LocationSchema, asked: set[str]) -> dict[Any, list[str]]:
    """Each asked id read as the account column's type, with the ids that read as that value (an integer
    column reads "7" and "07" alike, as ``count`` does)."""
    ids: dict[Any, list[str]] = defaultdict(list)
    for account in sorted(asked):
        ids[rows.read(schema.account, account, "account id")].append(account)
    return ids


def array_param(name: str, values: list[Any], column: sa.Column[Any]) -> Any:
    """``values`` bound as ONE parameter: an array of the column's own type."""
    return sa.bindparam(name, values, type_=postgresql.ARRAY(column.type))


def _totals(schema: LocationSchema, values: list[Any]) -> sa.Select[Any, int]:
    account = schema.account
    return (select(account, func.count()).select_from(schema.table)
            .where(account == func.any(array_param("ids", values, account))).group_by(account))


def _due(schema: LocationSchema, rows: RowSelection, anchor: str | None, pending: bool, members: list[Due],
         value_of: Mapping[str, Any]) -> sa.Select[Any, int]:
    """Rows matching each member's selector, grouped by account, in one statement."""
    account = schema.account
    extra: list[ColumnElement[bool]] = [rows.pending_anonymize()] if pending else []
    if anchor is None:
        values = list(dict.fromkeys(value_of[d.selector.account_id] for d in members))
        return (select(account, func.count()).select_from(schema.table)
                .where(account == func.any(array_param("ids", values, account)), *extra).group_by(account))
    column = schema.timestamps.get(anchor)
    if column is None:
        raise ValueError(f"location {schema.location_id}: no timestamp column for anchor "
                         f"{anchor!r} (the spec maps {sorted(schema.timestamps)})")
    cutoffs: dict[Any, datetime | date] = {}
    for member in members:
        cutoff = member.selector.cutoff
        if cutoff is None:  # Selector refuses this; never read an anchor without a cutoff as "all"
            raise ValueError(f"location {schema.location_id}: a selector with an anchor needs a cutoff")
        value = value_of[member.selector.account_id]
        bound = cutoff_value(column, cutoff)
        if cutoffs.setdefault(value, bound) != bound:
            raise ValueError(f"location {schema.location_id}: ids that read as the same account "
                             f"({value!r}) were given different cutoffs")
    wanted = (func.unnest(array_param("ids", list(cutoffs), account),
                          array_param("cutoffs", list(cutoffs.values()), column))
              .table_valued(sa.column("account", account.type), sa.column("cutoff", column.type))
              .render_derived(name="wanted"))
    return (select(wanted.c.account, func.count()).select_from(schema.table)
            .join(wanted, account == wanted.c.account)
            .where(column <= wanted.c.cutoff, *extra)  # NULL <= x is never true
            .group_by(wanted.c.account))


def _per_account(conn: sa.Connection, statement: sa.Select[Any, int], ids: Mapping[Any, list[str]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value, n in conn.execute(statement):
        for original in ids.get(value, ()):
            counts[original] = int(n)
    return counts
