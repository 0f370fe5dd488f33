"""The ledger's PostgreSQL roles: an owner that runs migrations, a runtime role the product connects as.

Migration 0003's triggers refuse UPDATE, DELETE and TRUNCATE of ``events`` for every role, but a table's
owner (or the schema's owner, or a superuser) can drop or disable a trigger. So the product never connects
as the owner: its runtime role owns nothing, belongs to no owning role, and holds only the table privileges
below. On ``events`` that is SELECT and INSERT: a role that holds the runtime credentials can append to the
history but not rewrite it, even if the triggers were gone.

``grant_runtime_role`` runs as the owner, after every ``retention ledger migrate``; it is idempotent (it
revokes everything first, then grants exactly ``RUNTIME_PRIVILEGES``) and then checks the role's effective
privileges, so a privilege still reaching the role through PUBLIC or another role is reported, not ignored.
"""

from __future__ import annotations

import re

from sqlalchemy import Connection, text
from sqlalchemy.exc import ArgumentError, OperationalError

from retention.ledger.database import create_ledger_engine
from retention.ledger.models import VERSION_TABLE
from retention.masking import mask_url

# What the product does with each table: every UPDATE it issues is listed, and it never DELETEs a row.
RUNTIME_PRIVILEGES: dict[str, tuple[str, ...]] = {
    "events": ("SELECT", "INSERT"),                   # the hash chain: appended to, never changed
    "chain_head": ("SELECT", "UPDATE"),               # moved on every append (SELECT ... FOR UPDATE needs UPDATE)
    "runs": ("SELECT", "INSERT", "UPDATE"),           # status, finish time
    "planned_tasks": ("SELECT", "INSERT", "UPDATE"),  # status, checkpoints, the fencing token
    "legal_holds": ("SELECT", "INSERT", "UPDATE"),    # a release sets released_*; a hold is never deleted
    "erasable_texts": ("SELECT", "INSERT", "UPDATE"),  # erasing a text blanks it; its row stays
    "certificates": ("SELECT", "INSERT"),
    "cohort_checkpoints": ("SELECT", "INSERT", "UPDATE"),  # a cohort's cursor and batch in flight; cleared, kept
    "subject_requests": ("SELECT", "INSERT", "UPDATE"),  # status; identifiers blanked once erased; row kept
    "customer_credentials": ("SELECT", "INSERT", "UPDATE"),  # a revocation sets revoked_*; never deleted
    VERSION_TABLE: ("SELECT",),                       # Ledger.open checks the schema revision
}
TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")
_ROLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
OWNER_URL_FIELD = "owner URL (--owner-url, RETENTION_LEDGER_OWNER_URL)"


class LedgerRoleError(ValueError):
    """The roles cannot be set up as asked; nothing was granted."""


def grant_runtime_role(owner_url: str, runtime_role: str) -> dict[str, list[str]]:
    """Give ``runtime_role`` exactly ``RUNTIME_PRIVILEGES`` on the ledger at ``owner_url`` (connected as the
    tables' owner), in one transaction. Returns the privileges per table, as checked afterwards."""
    if not isinstance(runtime_role, str) or not _ROLE_NAME.fullmatch(runtime_role):
        raise LedgerRoleError(f"runtime role (--runtime-role) {runtime_role!r}: expected a lowercase PostgreSQL "
                              "role name (letters, digits, underscores; at most 63)")
    try:
        engine = create_ledger_engine(owner_url)
    except (ArgumentError, ImportError) as exc:  # not a URL, an unknown dialect, a driver not installed
        raise LedgerRoleError(f"{OWNER_URL_FIELD}: cannot use it as a PostgreSQL URL ({exc})") from None
    try:
        if engine.dialect.name != "postgresql":
            raise LedgerRoleError(f"{OWNER_URL_FIELD}: the ledger roles are PostgreSQL roles, not "
                                  f"{engine.dialect.name} (a SQLite ledger has none; its triggers still refuse "
                                  "edits of events)")
        try:
            engine.connect().close()
        except OperationalError as exc:
            raise LedgerRoleError(f"{OWNER_URL_FIELD}: cannot connect to {mask_url(owner_url)}: "
                                  f"{' '.join(str(exc.orig).split())}") from None
        with engine.begin() as conn:
            schema = _check_roles(conn, runtime_role)
            _grant(conn, schema, runtime_role)
            return _check_effective(conn, schema, runtime_role)
    finally:
        engine.dispose()


def _check_roles(conn: Connection, runtime: str) -> str:
    """Refuse a runtime role that could drop the triggers or the tables; return the ledger's schema."""
    schema, owner = conn.execute(text("SELECT current_schema(), current_user")).one()
    row = conn.execute(text("SELECT rolsuper FROM pg_roles WHERE rolname = :r"), {"r": runtime}).one_or_none()
    if row is None:
        raise LedgerRoleError(f"runtime role {runtime!r} does not exist: create it (LOGIN, no other attributes) "
                              "as the database administrator first, as deploy/postgres-init does")
    if row.rolsuper:
        raise LedgerRoleError(f"runtime role {runtime!r} is a superuser: it could disable the events triggers")
    tables: dict[str, str] = {
        name: table_owner for name, table_owner in conn.execute(
            text("SELECT tablename, tableowner FROM pg_tables WHERE schemaname = :s"), {"s": schema})}
    missing = sorted(RUNTIME_PRIVILEGES.keys() - tables.keys())
    if missing:
        raise LedgerRoleError(f"schema {schema!r} has no table(s) {', '.join(missing)}: run "
                              "`retention ledger migrate` as the owner first")
    unknown = sorted(tables.keys() - RUNTIME_PRIVILEGES.keys())
    if unknown:
        raise LedgerRoleError(f"table(s) {', '.join(unknown)} in schema {schema!r} have no entry in "
                              "retention.ledger.roles.RUNTIME_PRIVILEGES: say there what the product does with them")
    schema_owner = conn.execute(text("SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = :s"),
                                {"s": schema}).scalar_one()
    for what, holder in [("the owner URL's role", owner), (f"the owner of schema {schema!r}", schema_owner),
                         *[(f"the owner of table {t}", o) for t, o in sorted(tables.items())]]:
        # Membership in an owning role lets the runtime role SET ROLE to it and drop the trigger.
        member = text("SELECT pg_has_role(:r, :holder, 'MEMBER')")
        if conn.execute(member, {"r": runtime, "holder": holder}).scalar_one():
            raise LedgerRoleError(f"runtime role {runtime!r} is, or is a member of, {what} ({holder}): "
                                  "it must own nothing in the ledger")
    return str(schema)  # current_schema(): a name (text)


def _grant(conn: Connection, schema: str, runtime: str) -> None:
    quote = conn.dialect.identifier_preparer.quote
    role, database = quote(runtime), quote(conn.execute(text("SELECT current_database()")).scalar_one())
    conn.execute(text(f"GRANT CONNECT ON DATABASE {database} TO {role}"))
    conn.execute(text(f"GRANT USAGE ON SCHEMA {quote(schema)} TO {role}"))
    for table, privileges in RUNTIME_PRIVILEGES.items():
        qualified = f"{quote(schema)}.{quote(table)}"
        conn.execute(text(f"REVOKE ALL ON TABLE {qualified} FROM {role}"))
        conn.execute(text(f"GRANT {', '.join(privileges)} ON TABLE {qualified} TO {role}"))


def _check_effective(conn: Connection, schema: str, runtime: str) -> dict[str, list[str]]:
    """The role's effective privileges (direct, through PUBLIC or any role) must be no more than the granted ones."""
    quote = conn.dialect.identifier_preparer.quote
    found: dict[str, list[str]] = {}
    for table, expected in RUNTIME_PRIVILEGES.items():
        qualified = f"{quote(schema)}.{quote(table)}"
        found[table] = [p for p in TABLE_PRIVILEGES if conn.execute(
            text("SELECT has_table_privilege(:r, :t, :p)"), {"r": runtime, "t": qualified, "p": p}).scalar_one()]
        extra = sorted(set(found[table]) - set(expected))
        if extra:
            raise LedgerRoleError(f"runtime role {runtime!r} still has {', '.join(extra)} on {table} through PUBLIC "
                                  "or a role it belongs to: revoke it there")
    return found
