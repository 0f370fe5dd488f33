"""VACUUM after a verified deletion: what a SQL DELETE leaves behind physically, and the step that reclaims it.

A PostgreSQL DELETE only marks row versions dead: their bytes stay in the table's data files (and in WAL,
replicas and backups) until VACUUM marks the space reusable and later writes overwrite it. Plain VACUUM
(not FULL: FULL rewrites the table under an ACCESS EXCLUSIVE lock, which would stop the application) does
the marking; it does not overwrite anything, so a certificate may say "VACUUM ran on these tables", never
that the bytes are gone. NIST SP 800-88 calls a logical deletion through the product's interface at most
*clear*, and VACUUM does not change that category.

``vacuum_tables`` runs it on one engine; ``vacuum_run`` runs it on the SQL tables a run's verified tasks
deleted from and records a ``storage.vacuumed`` (or ``storage.vacuum_failed``) ledger event: location ids
and table names only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, TypedDict

import sqlalchemy as sa

log = logging.getLogger(__name__)

COMMAND = "VACUUM (ANALYZE)"
LOCK_TIMEOUT = "10s"  # VACUUM waits for conflicting locks (a running ALTER TABLE, say); it must not queue forever


class VacuumFailed(RuntimeError):
    """VACUUM did not complete on a table; the message names the table and the error class only."""


def vacuum_tables(engine: sa.Engine, tables: Iterable[str]) -> list[str]:
    """``VACUUM (ANALYZE)`` each table (``schema.table`` or ``table``) in autocommit mode, as VACUUM cannot run
    inside a transaction block; returns the tables vacuumed. PostgreSQL only."""
    if engine.dialect.name != "postgresql":
        raise VacuumFailed(f"VACUUM is a PostgreSQL command; this engine is {engine.dialect.name}")
    quote = engine.dialect.identifier_preparer.quote
    done = []
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        # A session setting (VACUUM runs outside any transaction, so SET LOCAL cannot bound it): reset before
        # the connection goes back to the stores' shared pool.
        conn.execute(sa.text(f"SET lock_timeout = '{LOCK_TIMEOUT}'"))
        try:
            for table in dict.fromkeys(tables):  # once each, in order
                name = ".".join(quote(part) for part in table.split("."))
                try:
                    conn.execute(sa.text(f"{COMMAND} {name}"))
                except sa.exc.DBAPIError as exc:
                    raise VacuumFailed(f"{COMMAND} {table} failed: {type(exc.orig).__name__}") from None
                done.append(table)
        finally:
            conn.execute(sa.text("RESET lock_timeout"))
    log.info("vacuumed %d table(s)", len(done))
    return done


class Touched(TypedDict):
    """One Connection's share of a run: its SQL locations, their tables, and the tables of each location."""

    locations: list[str]
    tables: list[str]
    by_location: dict[str, list[str]]


def touched_tables(ledger: Any, inventory: Any, run_id: str) -> dict[str, Touched]:
    """Per Connection, the run's SQL locations whose verified tasks deleted, anonymized or moved rows, and their
    tables (children first, as they were deleted): ``{"locations", "tables", "by_location"}``."""
    found: dict[str, dict[str, list[str]]] = {}  # conn_id -> location -> tables
    for task in ledger.tasks(run_id):
        spec = inventory.locations.get(task.location)
        if getattr(spec, "kind", None) != "sql" or task.status != "verified" or not task.affected_count:
            continue
        by_location = found.setdefault(spec.conn_id, {})
        by_location[task.location] = [child.table for child in spec.children] + [spec.table]
    return {conn: Touched(locations=sorted(by_location),
                          tables=list(dict.fromkeys(t for loc in sorted(by_location) for t in by_location[loc])),
                          by_location={loc: by_location[loc] for loc in sorted(by_location)})
            for conn, by_location in found.items()}


def vacuum_run(ledger: Any, inventory: Any, run_id: str, *, actor: str,
               engine_for: Callable[[str], sa.Engine] | None = None) -> list[dict[str, Any]]:
    """VACUUM the tables a run's verified deletions touched and record it, one event per Connection.

    A failure is recorded (``storage.vacuum_failed``) and does not undo or fail the deletion: the rows are
    already deleted and verified; only the dead row versions wait for autovacuum instead."""
    if engine_for is None:
        from retention.stores import sql_engine  # one pool per Connection, shared with the stores

        engine_for = sql_engine
    recorded: list[dict[str, Any]] = []
    for conn_id, touched in sorted(touched_tables(ledger, inventory, run_id).items()):
        payload: dict[str, Any] = {"conn_id": conn_id, "locations": touched["locations"], "tables": touched["tables"],
                                   "by_location": touched["by_location"], "command": COMMAND}
        try:
            vacuum_tables(engine_for(conn_id), touched["tables"])
        except VacuumFailed as exc:
            ledger.append("storage.vacuum_failed", {**payload, "error": str(exc)}, actor=actor, run_id=run_id)
            recorded.append({**payload, "status": "failed"})
            continue
        ledger.append("storage.vacuumed", payload, actor=actor, run_id=run_id)
        recorded.append({**payload, "status": "vacuumed"})
    return recorded
