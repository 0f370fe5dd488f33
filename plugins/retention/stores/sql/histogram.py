"""When each account's rows fall due along a series of cutoffs, over one SQL location: one grouped statement per
(anchor, pending_anonymize) pair the series use, for any number of accounts and cutoffs.

Every cutoff of every series is read as a value of the anchor column's type (``selection.cutoff_value``, the
value ``count`` and ``tally`` compare with ``<=``), and the distinct values, sorted, become ONE array parameter of
thresholds, each the value plus the column's smallest step (a microsecond, or a day for a ``date`` column).
``width_bucket(anchor, thresholds)`` is then the number of values strictly before the row's anchor time, so a row
in bucket b is due (``anchor <= value``) exactly at the values from the b-th on: each account's count per bucket
tells at which of its own cutoffs its rows become due. Rows past every cutoff, and rows whose anchor is NULL
(``NULL <= x`` is never true), are not counted. A series without an anchor counts all of its account's rows,
as ``tally`` does. Ids are read and given back as ``tally`` reads and gives them (``tally.ids_by_value``).
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Collection
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine, func, select
from sqlalchemy.sql.elements import ColumnElement

from retention.stores.base import Cutoffs, DueSeries, Histogram, series_by_account
from retention.stores.sql.schema import Column, LocationSchema
from retention.stores.sql.selection import RowSelection, cutoff_value
from retention.stores.sql.tally import array_param, ids_by_value

_Group = tuple[str | None, bool]  # (anchor, pending_anonymize): one statement each


def histogram_rows(engine: Engine, schema: LocationSchema, rows: RowSelection,
                   series: Collection[DueSeries]) -> Histogram:
    """Per account with rows due at one of its cutoffs: {index of that first cutoff: rows}."""
    by_account = series_by_account(f"location {schema.location_id}", series)
    if not by_account:
        return {}
    ids = ids_by_value(rows, schema, set(by_account))
    value_of = {original: value for value, originals in ids.items() for original in originals}
    groups: dict[_Group, list[DueSeries]] = defaultdict(list)
    for item in by_account.values():
        groups[(item.anchor, item.pending_anonymize)].append(item)
    found: Histogram = {}
    with engine.connect() as conn:
        for (anchor, pending), members in groups.items():
            extra: list[ColumnElement[bool]] = [rows.pending_anonymize()] if pending else []
            named: dict[Any, list[str]] = defaultdict(list)  # only this group's accounts get its counts
            for member in members:
                named[value_of[member.account_id]].append(member.account_id)
            account_values = array_param("ids", list(named), schema.account)
            if anchor is None:
                everything = (select(schema.account, func.count()).select_from(schema.table)
                              .where(schema.account == func.any(account_values), *extra).group_by(schema.account))
                for value, n in conn.execute(everything):
                    for original in named.get(value, ()):
                        found[original] = {0: int(n)}
                continue
            column = _anchor_column(schema, anchor)
            thresholds = _Thresholds(column, members)
            bucket = func.width_bucket(column, array_param("thresholds", thresholds.stepped, column))
            counted = (select(schema.account, bucket, func.count()).select_from(schema.table)
                       .where(schema.account == func.any(account_values),
                              column <= thresholds.values[-1], *extra)  # NULL <= x is never true
                       .group_by(schema.account, bucket))
            for value, index, n in conn.execute(counted):
                for original in named.get(value, ()):
                    first = thresholds.first_due(by_account[original], int(index))
                    if first is not None:
                        per_cutoff = found.setdefault(original, {})
                        per_cutoff[first] = per_cutoff.get(first, 0) + int(n)
    return found


class _Thresholds:
    """The distinct cutoff values of a group's series, sorted, and where each series' cutoffs lie among them."""

    def __init__(self, column: Column, members: list[DueSeries]) -> None:
        shared: dict[Cutoffs, list[datetime | date]] = {}  # by identity: a series shared by many accounts
        for member in members:
            if member.cutoffs is not None and member.cutoffs not in shared:
                shared[member.cutoffs] = [cutoff_value(column, instant) for instant in member.cutoffs.instants]
        self.values = sorted({value for values in shared.values() for value in values})
        step = timedelta(days=1) if _is_date(column) else timedelta(microseconds=1)
        self.stepped = [value + step for value in self.values]  # bucket b: b values lie strictly before the anchor
        # per series, the position of each of its cutoffs among the values: never decreasing, as the cutoffs
        self._positions = {cutoffs: [bisect_left(self.values, value) for value in values]
                           for cutoffs, values in shared.items()}

    def first_due(self, series: DueSeries, bucket: int) -> int | None:
        """The first of the series' cutoffs at which a row of ``bucket`` is due (its value is the bucket's or later)."""
        if series.cutoffs is None:  # a group with an anchor holds only series with cutoffs (DueSeries checks)
            raise ValueError(f"account {series.account_id}: a series with an anchor needs cutoffs")
        positions = self._positions[series.cutoffs]
        first = bisect_left(positions, bucket)
        return first if first < len(positions) else None


def _anchor_column(schema: LocationSchema, anchor: str) -> Column:
    column = schema.timestamps.get(anchor)
    if column is None:
        raise ValueError(f"location {schema.location_id}: no timestamp column for anchor "
                         f"{anchor!r} (the spec maps {sorted(schema.timestamps)})")
    return column


def _is_date(column: Column) -> bool:
    return not isinstance(column.type, sa.DateTime)  # cutoff_value reads every other anchor type as a date
