"""``registry.yaml``: where the account registry is read from (a sibling of ``systems.yaml``, validated like it).

One model per source, tagged by ``kind``; each reads its registry (``read``) from its own module, and one account's
entry (``read_account``: the SQL source asks for that id alone; the file and HTTP sources read everything and keep
the account):

    source:
      kind: sql                 # the application's database, through an Airflow Connection (PostgreSQL)
      conn_id: app_db
      table: accounts           # or query: SELECT ... (run in a READ ONLY transaction)
      columns: {scc: scc}       # Account field -> column; unnamed fields read the column of their own name

    source: {kind: http, conn_id: app_api, path: /internal/accounts}    # JSON pages: {"accounts": [...], "next": ...}
    source: {kind: file, path: ../demo/accounts.yaml}                   # relative to registry.yaml
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, model_validator

from retention.rules.inventory import SqlName
from retention.rules.loader import load_model
from retention.rules.model import Identifier, Strict

if TYPE_CHECKING:
    from retention.registry.base import Registry
    from retention.rules import RuleSet

ColumnName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=63)]
# A single read-only statement: SELECT or WITH ... SELECT, no statement separator (the READ ONLY transaction it
# runs in refuses writes whatever it says; this refuses the obvious mistakes at validation).
_SELECT = re.compile(r"^\s*(select|with)\b[^;]*;?\s*$", re.IGNORECASE | re.DOTALL)


class Columns(Strict):
    """Which column holds each Account field. ``null`` for an optional field the table does not have."""

    id: ColumnName = "id"
    state: ColumnName = "state"
    jurisdiction: ColumnName = "jurisdiction"
    created_at: ColumnName = "created_at"
    contract_end: ColumnName | None = "contract_end"
    terminated_at: ColumnName | None = "terminated_at"
    election: ColumnName | None = "election"  # delete | return
    elected_at: ColumnName | None = "elected_at"
    customer: ColumnName | None = "customer"
    scc: ColumnName | None = None  # the transfer clauses (2010/87/EU | 2021/914), when the table keeps them
    instructions: ColumnName | None = "instructions"  # a JSON object: data class -> ISO-8601 period

    def named(self) -> dict[str, str]:
        """Account field -> column, for the fields the table has."""
        return {name: column for name, column in self.model_dump().items() if column is not None}


class SqlSource(Strict):
    kind: Literal["sql"]
    conn_id: Identifier  # an Airflow Connection to the application's PostgreSQL (read access suffices)
    table: SqlName | None = None  # "accounts" or "schema.accounts"
    query: str | None = None  # a SELECT returning the columns named in ``columns``
    columns: Columns = Field(default_factory=Columns)
    fetch_rows: Annotated[int, Field(ge=1, le=100_000)] = 2_000  # rows per round trip of the server-side cursor

    @model_validator(mode="after")
    def _table_or_query(self) -> SqlSource:
        if (self.table is None) == (self.query is None):
            raise ValueError("name either a table or a query, not both and not neither")
        if self.query is not None and not _SELECT.match(self.query):
            raise ValueError("query must be one SELECT statement (it runs in a READ ONLY transaction)")
        return self

    @property
    def label(self) -> str:
        return f"sql:{self.conn_id}/{self.table or 'query'}"

    def read(self, ruleset: RuleSet, directory: Path) -> Registry:
        from retention.registry.sql import read_sql

        return read_sql(self, ruleset)

    def read_account(self, ruleset: RuleSet, directory: Path, account_id: str) -> Registry:
        """One account's rows, through the source's own statement with ``WHERE id = :account_id``."""
        from retention.registry.sql import read_sql

        return read_sql(self, ruleset, account_id)


class HttpSource(Strict):
    kind: Literal["http"]
    conn_id: Identifier  # an Airflow Connection: host (schema = http or https, port), token in extra or login/password
    path: Annotated[str, Field(pattern=r"^/[A-Za-z0-9/_.~%-]*$", max_length=500)]
    timeout_seconds: Annotated[float, Field(gt=0, le=300)] = 30.0
    attempts: Annotated[int, Field(ge=1, le=10)] = 5  # per page, on connection errors, 429 and 5xx

    @property
    def label(self) -> str:
        return f"http:{self.conn_id}{self.path}"

    def read(self, ruleset: RuleSet, directory: Path) -> Registry:
        from retention.registry.http import read_http

        return read_http(self, ruleset)

    def read_account(self, ruleset: RuleSet, directory: Path, account_id: str) -> Registry:
        """The endpoint has no per-account lookup: every page is read, as for a whole read, and the account kept."""
        return self.read(ruleset, directory).only(account_id)


class FileSource(Strict):
    kind: Literal["file"]
    path: Path  # relative to registry.yaml's directory

    @property
    def label(self) -> str:
        return f"file:{self.path.name}"

    def read(self, ruleset: RuleSet, directory: Path) -> Registry:
        from retention.registry.file import read_file

        return read_file(directory / self.path, ruleset)

    def read_account(self, ruleset: RuleSet, directory: Path, account_id: str) -> Registry:
        """The file is checked whole (one bad entry refuses it), then the account kept."""
        return self.read(ruleset, directory).only(account_id)


Source = Annotated[SqlSource | HttpSource | FileSource, Field(discriminator="kind")]


class RegistryFile(Strict):
    source: Source


def load_config(path: Path) -> RegistryFile:
    """``registry.yaml``, or RulesError naming file:line:field."""
    model, _ = load_model(path, RegistryFile)
    return model
