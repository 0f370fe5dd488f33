"""The location's tables as the database has them: reflected when the store is built, and refused with a
``ValueError`` naming the location and the table/column when they cannot be acted on safely.

Refused: a missing table or column, a key that is not unique, integer, text or uuid, or is nullable, a
timestamp that is not a time, a child column without a foreign key to our key, an anonymize column that
cannot be cleared, and a table that references ours with ``ON DELETE CASCADE / SET NULL / SET DEFAULT``
without being listed as a child (the database would change its rows silently and uncounted).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any, NoReturn

import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.exc import NoSuchTableError

from retention.rules.inventory import SqlLocation

log = logging.getLogger(__name__)

HASH_HEX_LENGTH = 64  # hex sha256

Column = sa.Column[Any]


@dataclass(frozen=True)
class Child:
    table: sa.Table
    fk: Column  # points at the parent's key
    key: Column  # orders the export
    range_hint: bool  # the parent's key range applies to fk too


class LocationSchema:
    """The reflected table, its key, account, timestamp and anonymize columns, and its child tables."""

    def __init__(self, location_id: str, spec: SqlLocation, engine: Engine) -> None:
        self.location_id = location_id
        self._engine = engine
        self.table = self.reflect(spec.table)
        self.account = self._column(self.table, spec.account_column, "account_column")
        self.key = self._column(self.table, spec.key_column, "key_column")
        self._require_key_type(self.key)
        self._require_unique_key()
        self.timestamps: dict[str, Column] = {anchor: self._column(self.table, name, f"timestamps.{anchor}")
                                              for anchor, name in spec.timestamps.items()}
        for anchor, column in self.timestamps.items():
            if not isinstance(column.type, (sa.DateTime, sa.Date)):
                self.refuse(f"timestamps.{anchor}: column {name_of(column)} is {column.type}, "
                            "not a timestamp or date")

        self.children: list[Child] = []
        for i, child in enumerate(spec.children):
            ctable = self.reflect(child.table, f"children[{i}].table")
            fk = self._column(ctable, child.foreign_key, f"children[{i}].foreign_key")
            ckey = self._column(ctable, child.key_column, f"children[{i}].key_column")
            self.children.append(Child(ctable, fk, ckey, self._check_child_link(fk, f"children[{i}]")))
            leading = [list(idx.columns)[:1] for idx in ctable.indexes] + [list(ctable.primary_key.columns)[:1]]
            if not any(len(cols) == 1 and cols[0] is fk for cols in leading):
                log.warning("location %s: %s has no index led by %s; every batch will scan it",
                            location_id, ctable.fullname, fk.name)

        # kind -> the column holding that kind of data subject identifier (its index: ``lookups``)
        self.subjects: dict[str, Column] = {kind: self._column(self.table, spec_column.column, f"subjects.{kind}")
                                            for kind, spec_column in spec.subjects.items()}

        self.null_columns: list[Column] = []
        self.hash_columns: list[Column] = []
        if spec.anonymize is not None:
            self.null_columns = [self._column(self.table, n, "anonymize.set_null") for n in spec.anonymize.set_null]
            self.hash_columns = [self._column(self.table, n, "anonymize.hash") for n in spec.anonymize.hash]
            for column in self.null_columns:
                if not column.nullable:
                    self.refuse(f"anonymize.set_null: column {name_of(column)} is NOT NULL")
            for column in self.hash_columns:
                ctype = column.type
                if not isinstance(ctype, sa.String) or isinstance(ctype, sa.Enum):
                    self.refuse(f"anonymize.hash: column {name_of(column)} is {ctype}, "
                                "not a text column that can hold a hex hash")
                if ctype.length is not None and ctype.length < HASH_HEX_LENGTH:
                    self.refuse(f"anonymize.hash: column {name_of(column)} holds {ctype.length} "
                                f"characters, a hex sha256 needs {HASH_HEX_LENGTH}")
            if self.key in self.null_columns + self.hash_columns or \
                    self.account in self.null_columns + self.hash_columns:
                self.refuse("anonymize: the key and account columns select the rows; they cannot be cleared")
        self._refuse_silent_references()

    def reflect(self, qualified: str, field_name: str = "table") -> sa.Table:
        schema, _, name = qualified.rpartition(".")
        try:
            return sa.Table(name, sa.MetaData(), schema=schema or None, autoload_with=self._engine)
        except NoSuchTableError:
            self.refuse(f"{field_name}: table {qualified!r} does not exist")

    def refuse(self, message: str) -> NoReturn:
        raise ValueError(f"location {self.location_id}: {message}")

    def _column(self, table: sa.Table, name: str, field_name: str) -> Column:
        if name not in table.c:
            self.refuse(f"{field_name}: column {name!r} does not exist in table {table.fullname!r}")
        column: Column = table.c[name]
        return column

    def _check_child_link(self, fk: Column, field_name: str) -> bool:
        """Refuse a child column unless a foreign key constraint ties it to our key: a column named by
        mistake would otherwise have its rows matched against our keys and deleted. Returns whether the
        batch's key range may also be applied to the child column (same ordering: integer or uuid keys,
        or text under the same collation), which lets the child delete use the column's index."""
        default = sa.inspect(self._engine).default_schema_name
        ours = (self.table.schema or default, self.table.name, self.key.name)
        referred = [(c.column.table.schema or default, c.column.table.name, c.column.name) for c in fk.foreign_keys]
        if ours not in referred:
            self.refuse(f"{field_name}.foreign_key: {name_of(fk)} has no foreign key constraint referencing "
                        f"the key {name_of(self.key)}; add one (NOT VALID is enough), or fix the spec")
        if python_type(self.key) is str:
            return getattr(fk.type, "collation", None) == getattr(self.key.type, "collation", None)
        return python_type(fk) is python_type(self.key)

    def _require_unique_key(self) -> None:
        key = self.key
        unique = [list(self.table.primary_key.columns)]
        unique += [list(c.columns) for c in self.table.constraints if isinstance(c, sa.UniqueConstraint)]
        unique += [list(i.columns) for i in self.table.indexes if i.unique]
        if not any(len(cols) == 1 and cols[0] is key for cols in unique):
            self.refuse(f"key_column: {name_of(key)} is not unique on its own (no primary key, unique "
                        "constraint or unique index on it alone); the batch cursor needs a unique key")
        if key.nullable:
            self.refuse(f"key_column: {name_of(key)} is nullable; rows with a NULL key could not be batched")

    def _require_key_type(self, column: Column) -> None:
        if python_type(column) in (int, str, uuid.UUID):
            return
        self.refuse(f"key_column: {name_of(column)} is {column.type}; keys must be integer, text or uuid")

    def _refuse_silent_references(self) -> None:
        """Refuse foreign keys into our table (or a child) that make the database change rows on its
        own (ON DELETE CASCADE / SET NULL / SET DEFAULT), unless they are the declared child links:
        such rows would be deleted or altered uncounted, possibly outside the selector."""
        inspector = sa.inspect(self._engine)
        default = inspector.default_schema_name

        def qualified(schema: str | None, name: str) -> tuple[str | None, str]:
            return (schema or default, name)

        targets = {qualified(t.schema, t.name) for t in [self.table] + [c.table for c in self.children]}
        declared = {(qualified(c.table.schema, c.table.name), c.fk.name) for c in self.children}
        for schema in sorted({schema for schema, _ in targets}, key=lambda s: s or ""):
            for (ref_schema, ref_name), fks in inspector.get_multi_foreign_keys(schema=schema).items():
                referrer = qualified(ref_schema, ref_name)
                for fk in fks:
                    target = qualified(fk.get("referred_schema"), fk["referred_table"])
                    ondelete = ((fk.get("options") or {}).get("ondelete") or "").upper()
                    columns = fk["constrained_columns"]
                    if target in targets and ondelete in ("CASCADE", "SET NULL", "SET DEFAULT") and \
                            not (len(columns) == 1 and (referrer, columns[0]) in declared):
                        self.refuse(f"children: table {'.'.join(str(p) for p in referrer)!r} references "
                                    f"{'.'.join(str(p) for p in target)!r} with ON DELETE {ondelete}, which "
                                    "would change its rows silently and uncounted; list it under children "
                                    "(or change the foreign key)")


def name_of(column: Column) -> str:
    return f"{column.table.fullname}.{column.name}"


def python_type(column: Column) -> type | None:
    try:
        python: type = column.type.python_type
    except NotImplementedError:
        return None
    return python
