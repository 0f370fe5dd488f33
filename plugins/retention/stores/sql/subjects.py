"""Finding a data subject in one SQL location: the indexes a lookup goes through, and identity expansion.

A subject request looks rows up by ``column = ANY(:values)`` on each subject column (``selection.subject_match``),
within one account. The inventory names the index each lookup needs; ``check_lookups`` reads the catalog
(``pg_index``/``pg_attribute``) to confirm that it exists on the table, is valid, and leads with the column, so a
lookup never turns into a scan of the whole shared table.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import and_, literal, select, union

from retention.rules.inventory import SqlLocation
from retention.rules.subjects import Subject, normalize
from retention.stores.base import SubjectLookupError
from retention.stores.sql.schema import LocationSchema, name_of
from retention.stores.sql.selection import RowSelection

# The index named ``:index`` of the table ``:schema.:table`` (NULL schema: the connection's current schema), with
# whether it is valid and the column its first key is (NULL when the first key is an expression).
_INDEX = sa.text("""
    SELECT i.indisvalid AS valid, a.attname AS leading
      FROM pg_index i
      JOIN pg_class ic ON ic.oid = i.indexrelid
      JOIN pg_namespace ixn ON ixn.oid = ic.relnamespace
      JOIN pg_class tc ON tc.oid = i.indrelid
      JOIN pg_namespace tn ON tn.oid = tc.relnamespace
      LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
     WHERE ic.relname = :index AND ixn.nspname = coalesce(:index_schema, tn.nspname)
       AND tc.relname = :table AND tn.nspname = coalesce(:schema, current_schema())
""")


def check_lookups(engine: sa.Engine, schema: LocationSchema, spec: SqlLocation) -> None:
    """Raise ``SubjectLookupError`` for the first subject column whose index is missing, invalid or led by
    another column."""
    table = schema.table
    with engine.connect() as conn:
        for kind, wanted in sorted(spec.subjects.items()):
            column = name_of(schema.subjects[kind])
            if not isinstance(schema.subjects[kind].type, sa.String):  # Text is a String
                # An identifier compared with an integer or uuid column would fail in the server with the value
                # in its message; a person's identifiers are kept as text.
                raise SubjectLookupError(f"location {schema.location_id}: subjects.{kind}: column {column} is "
                                         f"{schema.subjects[kind].type}, not text: identifiers are matched as text")
            index_schema, _, index = wanted.index.rpartition(".")
            found = conn.execute(_INDEX, {"index": index, "index_schema": index_schema or None,
                                          "table": table.name, "schema": table.schema}).first()
            where = f"location {schema.location_id}: subjects.{kind}: column {column}, index {wanted.index}"
            if found is None:
                raise SubjectLookupError(f"{where}: no such index on {table.fullname}; create it (a lookup by "
                                         f"{wanted.column} would scan the whole table)")
            if not found.valid:
                raise SubjectLookupError(f"{where}: the index is not valid (a failed concurrent build?); "
                                         "rebuild it")
            if found.leading != wanted.column:
                raise SubjectLookupError(f"{where}: the index leads with "
                                         f"{found.leading or 'an expression'}, not {wanted.column}; a lookup "
                                         "cannot go through it")


def linked(engine: sa.Engine, schema: LocationSchema, rows: RowSelection, account_id: str, subject: Subject,
           limit: int) -> Subject | None:
    """The values of every subject column on the account's rows ``subject`` selects: one statement, a UNION of one
    ``SELECT kind, column`` per subject column (UNION: distinct pairs), LIMIT ``limit`` + 1. Values that do not
    normalize are skipped; None when no row matched or none of their values normalized."""
    if limit < 0:
        raise ValueError("limit must be zero or more")
    if not schema.subjects:
        return None
    match = and_(schema.account == rows.read(schema.account, account_id, "account id"),
                 rows.subject_match(subject))
    parts = [select(literal(kind).label("kind"), sa.cast(column, sa.Text).label("value"))
             .where(match, column.is_not(None))
             for kind, column in sorted(schema.subjects.items())]
    statement = union(*parts).limit(limit + 1)
    found: dict[str, set[str]] = {}
    with engine.connect() as conn:
        for kind, value in conn.execute(statement):
            try:
                found.setdefault(kind, set()).add(normalize(kind, value))
            except ValueError:
                continue  # not an identifier of its kind (a placeholder, a legacy value): nothing to follow
    return Subject.of(found) if found else None
