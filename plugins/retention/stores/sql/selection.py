"""Which rows a selector takes: SQLAlchemy Core predicates over the reflected table, every value bound.

A row is selected only by its account column and, with an anchor, by ``timestamp <= cutoff``: a NULL
timestamp cannot be dated and is never selected. With a subject, only the account's rows where one of the
location's subject columns holds one of the subject's values of that kind (``column = ANY(:values)``); a location
keeping none of the subject's kinds selects no row. Batches are key ranges ``(after, upper]``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import and_, func, or_
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql.elements import ColumnElement

from retention.rules.subjects import Subject
from retention.stores.base import Selector
from retention.stores.sql.schema import HASH_HEX_LENGTH, Column, LocationSchema, name_of, python_type

_HASHED_PATTERN = "^[0-9a-f]{64}$"  # what an anonymized hash column holds


class RowSelection:
    """Predicates for one location: the selector's rows, a key range, rows still to anonymize."""

    def __init__(self, schema: LocationSchema) -> None:
        self._schema = schema
        self._location_id = schema.location_id

    def where(self, selector: Selector, after: str | None, upper: str | None, *,
              pending_anonymize: bool = False) -> ColumnElement[bool]:
        schema = self._schema
        clauses: list[ColumnElement[bool]] = [schema.account == self.read(schema.account, selector.account_id,
                                                                          "account id")]
        if selector.anchor is not None:
            column = schema.timestamps.get(selector.anchor)
            if column is None:
                raise ValueError(f"location {self._location_id}: no timestamp column for anchor "
                                 f"{selector.anchor!r} (the spec maps {sorted(schema.timestamps)})")
            if selector.cutoff is None:  # Selector refuses this; never read an anchor without a cutoff as "all"
                raise ValueError(f"location {self._location_id}: a selector with an anchor needs a cutoff")
            clauses.append(at_or_before(column, selector.cutoff))  # NULL <= x is never true
        if selector.subject is not None:
            clauses.append(self.subject_match(selector.subject))
        clauses += self.key_range(schema.key, after, upper)
        if pending_anonymize:
            clauses.append(self.pending_anonymize())
        return and_(*clauses)

    def subject_match(self, subject: Subject) -> ColumnElement[bool]:
        """Rows where a subject column holds one of the subject's values of its kind, each kind's values bound as
        ONE array parameter; ``false`` when the location keeps none of the subject's kinds (never every row)."""
        matches = [column == sa.any_(sa.bindparam(f"subject_{kind}", list(values), type_=ARRAY(column.type),
                                                        unique=True))
                   for kind, column in sorted(self._schema.subjects.items()) if (values := subject.values(kind))]
        return or_(*matches) if matches else sa.false()

    def key_range(self, column: Column, after: str | None, upper: str | None) -> list[ColumnElement[bool]]:
        """``after < column <= upper`` with the cursors read back as the key's type."""
        bounds: list[ColumnElement[bool]] = []
        if after is not None:
            bounds.append(column > self.read(self._schema.key, after, "cursor"))
        if upper is not None:
            bounds.append(column <= self.read(self._schema.key, upper, "cursor"))
        return bounds

    def read(self, column: Column, text: str, what: str) -> Any:
        """``text`` as a value of the column's type (integer, uuid or text); the value is not echoed."""
        wanted = python_type(column)
        if wanted is int:
            convert: type = int
        elif wanted is uuid.UUID:
            convert = uuid.UUID
        else:
            return text
        try:
            return convert(text)
        except (TypeError, ValueError):
            raise ValueError(f"location {self._location_id}: a {what} for {name_of(column)} must be "
                             f"{'an integer' if wanted is int else 'a uuid'}") from None

    def pending_anonymize(self) -> ColumnElement[bool]:
        """A row still holding something to clear: a set_null column not NULL, or a hash-column holding a
        value that is not a hex sha256. (An original value that already is a 64-hex-digit string reads
        as done; personal data such as names, e-mail or IP addresses never has that shape.)"""
        schema = self._schema
        if not (schema.null_columns or schema.hash_columns):
            raise ValueError(f"location {self._location_id}: the spec names no anonymize columns")
        pending: list[ColumnElement[bool]] = [c.is_not(None) for c in schema.null_columns]
        pending += [and_(c.is_not(None), ~is_hashed(c)) for c in schema.hash_columns]
        return or_(*pending)


def is_hashed(column: Column) -> ColumnElement[bool]:
    return and_(func.length(column) == HASH_HEX_LENGTH, column.regexp_match(_HASHED_PATTERN))


def at_or_before(column: Column, cutoff: datetime) -> ColumnElement[bool]:
    """``column <= cutoff`` for the column's type; NULL never matches (see ``cutoff_value``)."""
    return column <= cutoff_value(column, cutoff)


def cutoff_value(column: Column, cutoff: datetime) -> datetime | date:
    """The cutoff as a value of the column's type, so that ``column <= value`` selects what may go.

    ``timestamp with time zone`` compares instants. A naive ``timestamp`` is read as UTC. A ``date``
    column matches only days that ended at or before the cutoff (the day is read as a UTC day), so a
    record is never taken for older than it may be. ``tally`` binds these values as an array of the
    column's type, one per account.
    """
    utc = cutoff.astimezone(UTC)
    if isinstance(column.type, sa.DateTime):
        return utc if column.type.timezone else utc.replace(tzinfo=None)
    return (utc - timedelta(days=1)).date()
