"""Exporting one account's rows (the return flow): JSON Lines, one file per table, one consistent snapshot."""

from __future__ import annotations

import json
import logging
import os
from base64 import b64encode
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.sql.elements import ColumnElement

from retention.stores.sql.schema import LocationSchema

log = logging.getLogger(__name__)


def export_rows(engine: sa.Engine, schema: LocationSchema, where: ColumnElement[bool], sink: Path | str,
                chunk_rows: int) -> int:
    """Write the rows ``where`` selects as JSON Lines ``sink/<table>.jsonl``, each child table in its own file.

    Streams through a server-side cursor inside one REPEATABLE READ transaction, so the parent and
    child files are one consistent snapshot. Each file is written under a ``.partial`` name and
    renamed when complete. Returns the number of the location's rows written.
    """
    destination = Path(sink)
    destination.mkdir(parents=True, exist_ok=True)
    table = schema.table
    written: dict[str, int] = {}
    with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
        with conn.begin():
            written[table.fullname] = write_jsonl(
                conn, select(table).where(where).order_by(schema.key),
                destination / f"{table.fullname}.jsonl", chunk_rows)
            for child in schema.children:
                written[child.table.fullname] = write_jsonl(
                    conn, select(child.table).where(child.fk.in_(select(schema.key).where(where)))
                    .order_by(child.key), destination / f"{child.table.fullname}.jsonl", chunk_rows)
    log.info("location %s: exported %s", schema.location_id,
             ", ".join(f"{n} rows of {t}" for t, n in written.items()))
    return written[table.fullname]


def write_jsonl(conn: sa.Connection, statement: sa.Select[Any], path: Path, chunk_rows: int) -> int:
    """Stream ``statement``'s rows into ``path`` as JSON Lines (written aside, renamed when done)."""
    partial = path.with_name(path.name + ".partial")
    rows = 0
    with partial.open("w", encoding="utf-8") as out:
        result = conn.execution_options(yield_per=chunk_rows).execute(statement)
        for row in result:
            out.write(json.dumps(dict(row._mapping), default=json_value, ensure_ascii=False))
            out.write("\n")
            rows += 1
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial, path)
    return rows


def json_value(value: object) -> object:
    """JSON for what a driver returns beyond JSON's own types: ISO 8601 times (UTC when aware)."""
    if isinstance(value, datetime):
        return (value.astimezone(UTC) if value.tzinfo else value).isoformat()
    if isinstance(value, (date, dtime)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return b64encode(bytes(value)).decode("ascii")
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)  # UUID, ipaddress, ranges, ...
