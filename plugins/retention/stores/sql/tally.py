"""Per-account counts over one SQL location, set-based: a constant number of grouped statements for any
number of accounts (written by the issue-18 planning work)."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import Engine

from retention.stores.base import Due, Tally
from retention.stores.sql.schema import LocationSchema
from retention.stores.sql.selection import RowSelection


def tally_rows(engine: Engine, schema: LocationSchema, rows: RowSelection, accounts: Collection[str],
               due: Collection[Due]) -> dict[str, Tally]:
    raise NotImplementedError("set-based SQL tally: being written")
